import pytest

from experiments import visd_v5e


def tiny_config(tmp_path, mode="visd_coach", *, sft_steps=1, rl_steps=2, **overrides):
    """The local variant shrunk to seconds: 2 prompts x 2 samples, 12 new tokens."""
    c = visd_v5e.get_config("local")
    c.mode = mode
    c.model.preset = "tiny"
    c.workdir = str(tmp_path / "run")
    c.data.cache_dir = str(tmp_path.parent / "synth-cache")
    c.data.synthetic_examples = 10
    c.sft.update(steps=sft_steps, batch_size=2)
    c.rl.update(steps=rl_steps, prompts_per_step=2, num_generations=2, minibatches=2, max_new_tokens=12)
    c.coach.hard_threshold = 100.0  # every prompt is hard, so the coach path always runs
    c.visd.lambda_steps = 10
    c.checkpoint.update(every=1, keep=3, async_save=False)
    c.log.update(progress=False)
    for k, v in overrides.items():
        node = c
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return c


@pytest.fixture
def make_config(tmp_path):
    return lambda **kw: tiny_config(tmp_path, **kw)
