"""The main job on a Hugging Face Qwen2.5-VL directory with the REAL Qwen2 tokenizer.

The checkpoint is tiny and random but laid out as the hub's (config.json text fields at the
top, real token ids 151643.., generation_config's two stop ids, vocab 151936): every special
id the pipeline, sampler, judge and trainer use must come from it, and no record may be
skipped for a wrong vision-pad id.
"""
import json
import math

import pytest

from tests.training.conftest import tiny_config
from visd_jax.training.trainer import Trainer

pytestmark = [pytest.mark.slow, pytest.mark.torch]


def _real_config(tmp_path, ckpt, mode, **kw):
    c = tiny_config(tmp_path, mode=mode, **kw)
    c.model.update(preset="", path=str(ckpt))
    # the real BPE's prompts are shorter than the tiny one's; one bucket keeps one compile
    c.data.update(token_buckets=(512,), max_prompt_tokens=512)
    return c


# Each run is an SFT step then RL steps, so `sft` is in both; visd_coach's RL step holds every
# piece of visioncoach's (coach, prompted rollouts, NLL) and visd's (judge, teacher signal).
# All five modes ran here once (sft 38 s, gspo 54, visioncoach 50, visd 41, visd_coach 50 on
# 2 cores); CI keeps the two that cover them, one of them on the release's recipe (every
# frame an image block: twice the vision tokens, hence the larger bucket).
@pytest.mark.parametrize("mode,tie,recipe", [("gspo", True, "release"), ("visd_coach", False, "ours")])
def test_every_mode_on_a_real_tokenizer_checkpoint(tmp_path, qwen_checkpoint, mode, tie, recipe):
    ckpt = qwen_checkpoint(tie)
    cfg = _real_config(tmp_path, ckpt, mode)
    cfg.recipe = recipe
    if recipe == "release":
        cfg.data.update(token_buckets=(1024,), max_prompt_tokens=1024)
    run = Trainer(cfg)
    assert run.ids.video_pad == 151656 and run.ids.pad == 151643
    assert run.ids.stop == (151645, 151643)  # generation_config.json's eos ids
    rows = run.run()
    assert len(rows) == cfg.sft.steps + cfg.rl.steps
    assert all(r["data/bad_records"] == 0 for r in rows), "a record was skipped"
    rl = [r for r in rows if r["phase"] == "rl"]
    assert all(math.isfinite(r.get("train/loss", r.get("sft/loss"))) for r in rows)
    for r in rl:
        assert 0.0 <= r["reward/total"] <= 7.0 and "reward/format" in r
    written = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sum("reward/total" in x for x in written) == len(rl)
    if mode != "sft":
        samples = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
        assert samples and all(isinstance(c["text"], str) for s in samples for c in s["completions"])


def test_checkpoint_without_tokenizer_is_a_start_up_error(tmp_path, qwen_checkpoint):
    import shutil

    d = tmp_path / "no_tok"
    shutil.copytree(qwen_checkpoint(False), d)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (d / f).unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        Trainer(_real_config(tmp_path, d, "gspo"))
    assert not (d / "visd_build.json").exists()  # the tiny tokenizer was not built into it
