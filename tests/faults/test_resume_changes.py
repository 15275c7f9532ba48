"""A restart compares its config with the checkpoint's: a changed seed, lr or data is refused
(listing the differences) unless allowed; more steps or other logging are fine."""
import pytest

from tests.training.conftest import tiny_config
from visd_jax.training.config import config_changes
from visd_jax.training.trainer import Trainer


def test_changed_meaning_is_refused_harmless_changes_resume(tmp_path):
    cfg = tiny_config(tmp_path, mode="sft", sft_steps=1, rl_steps=0)
    Trainer(cfg).run()
    cfg.seed, cfg.sft.lr = 1, 5e-3
    with pytest.raises(ValueError, match=r"another config: seed: 0 -> 1; sft.lr: 0.003 -> 0.005.*allow_changes"):
        Trainer(cfg)
    cfg.resume.allow_changes = True
    cfg.sft.steps, cfg.log.tensorboard = 2, False  # and more steps, other logging: never refused
    assert Trainer(cfg).start == 1


def test_config_changes_sorts_meaningful_from_other():
    a = {"seed": 0, "workdir": "a", "data": {"fps": 2.0, "num_workers": 0, "token_buckets": [256]},
         "rl": {"steps": 10, "top_p": 0.95}, "resume": {"allow_changes": False}}
    b = {"seed": 0, "workdir": "b", "data": {"fps": 1.0, "num_workers": 4, "token_buckets": (256,)},
         "rl": {"steps": 20, "top_p": 0.9}, "resume": {"allow_changes": True}}
    meaningful, other = config_changes(a, b)
    assert meaningful == ["data.fps: 2.0 -> 1.0", "rl.top_p: 0.95 -> 0.9"]
    assert other == ["data.num_workers: 0 -> 4", "rl.steps: 10 -> 20"]
