"""The VP-Selector model: trained through the trainer's SFT update with LoRA, a probability
per kind, restored from its run directory by `learned:DIR` and cached once for RL."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from visd_jax.prompt_kinds import KINDS

pytestmark = pytest.mark.slow


def test_label_tokens_are_distinct_in_the_real_qwen_tokenizer(qwen_tokenizer_dir):
    from visd_jax.text import load_tokenizer
    from visd_jax.vp_selector.model import label_ids

    for tok in (load_tokenizer(str(qwen_tokenizer_dir)), load_tokenizer()):
        ids = label_ids(tok)
        assert len({v[0] for v in ids.values()}) == len(KINDS)
        assert tok.decode(sum(ids.values(), [])) == "".join(KINDS)


def test_train_predict_and_the_learned_cache(tmp_path, monkeypatch):
    from flax import nnx
    import jax

    from experiments import vp_selector
    from visd_jax.training.selector import CachedSelector, make_selector
    from visd_jax.training.trainer import Trainer
    from visd_jax.vp_selector import model

    cfg = vp_selector.get_config("local")
    cfg.workdir = str(tmp_path / "sel")
    cfg.model.preset = "tiny"  # the experiment starts from a proxy; a preset is what this test needs
    cfg.data.update(synthetic_examples=10, cache_dir=str(tmp_path / "synth"))
    cfg.sft.update(steps=3, batch_size=2, warmup_steps=0)
    cfg.log.progress = False
    sel_cfg = cfg.copy_and_resolve_references()
    sel_cfg.workdir = str(tmp_path / "sel" / "selector")
    (tmp_path / "sel").mkdir()
    (tmp_path / "sel" / model.CONFIG_FILE).write_text(sel_cfg.to_json())
    t = Trainer(sel_cfg)
    base = jax.device_get(nnx.split_state(t.state["params"], nnx.LoRAParam, ...)[1])
    rows = [{"index": i, "label": KINDS[i % len(KINDS)]} for i in range(6)]
    losses = model.train(t, rows, batch_size=2, seed=0)
    assert [m["step"] for m in losses] == [1, 2, 3] and all(math.isfinite(m["loss"]) for m in losses)
    after = jax.device_get(nnx.split_state(t.state["params"], nnx.LoRAParam, ...)[1])
    for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(after)):
        np.testing.assert_array_equal(a, b)  # LoRA: the base stays frozen
    preds = model.predict(t, range(4), batch_size=3)
    assert len(preds) == 4
    for p in preds.values():
        assert set(p) == set(KINDS) and sum(p.values()) == pytest.approx(1.0, abs=1e-5)
    t.ckpt.close()

    rl_dir = tmp_path / "rl"
    sel = make_selector(f"learned:{tmp_path / 'sel'}", workdir=str(rl_dir), source=t.source)
    assert isinstance(sel, CachedSelector)
    cache = json.loads((rl_dir / "vp_predictions.json").read_text())["predictions"]
    assert len(cache) == len(t.source)  # every example of the RL data, once
    for rid in list(preds)[:2]:  # the restored selector predicts what the trained one did
        assert cache[rid]["probs"] == pytest.approx(preds[rid], abs=1e-5)
    monkeypatch.setattr(model, "precompute", lambda *a, **k: pytest.fail("the cache is computed once"))
    again = make_selector(f"learned:{tmp_path / 'sel'}", workdir=str(rl_dir), source=t.source)
    assert again.predictions == sel.predictions
