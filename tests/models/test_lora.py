"""LoRA adapters (models/lora.py): a fresh adapter changes no logit, only adapters train,
the frozen base is the reference model, and a merged export is the adapted model in
transformers."""
from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from tests.models.hf_reference import build_hf_model, hf_logits, make_batch, GRID, SECONDS
from visd_jax.models.lora import LoraSpec, add_lora, has_lora, merge_lora, split_trainable, without_adapters

TOL = 1e-4  # float32 logits vs transformers (tests/models/test_parity.py)


@pytest.fixture(scope="module")
def hf_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf_tiny_lora")
    return d, build_hf_model(d, seed=3)


def _logits(model, ids, mask, px):
    return np.asarray(nnx.jit(lambda m, a, b, c, s: m(a, b, c, GRID, s))(model, ids, mask, px, SECONDS))


def _randomise_b(model, seed=0):
    """Adapters as training leaves them: B no longer zero."""
    lora, _ = split_trainable(nnx.state(model))
    keys = iter(jax.random.split(jax.random.key(seed), len(jax.tree.leaves(lora))))
    nnx.update(model, jax.tree.map(lambda x: 0.05 * jax.random.normal(next(keys), x.shape, x.dtype), lora))


@pytest.mark.torch
def test_fresh_adapters_give_the_base_logits_exactly(hf_ckpt):
    from visd_jax.models.hf_io import load_hf_checkpoint

    d, _ = hf_ckpt
    ids, mask, px = make_batch(seed=1)
    model = load_hf_checkpoint(d, scan_layers=True)  # stacked adapters [L, in, r] (unscanned: the export test)
    base = _logits(model, ids, mask, px)
    add_lora(model, LoraSpec(rank=4, alpha=8.0, vision=True))
    assert has_lora(model)
    names = {"/".join(map(str, p[:-1])) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.LoRAParam))}
    assert any("visual" in n and n.endswith("qkv/lora") for n in names)  # vision tower too
    assert any(n.endswith("down_proj/lora") for n in names)
    np.testing.assert_array_equal(_logits(model, ids, mask, px), base)  # B = 0: bit-equal
    _randomise_b(model)
    moved = _logits(model, ids, mask, px)
    assert np.abs(moved - base).max() > 1e-3
    # without_adapters is the base model again: the reference of the KL, with no copy kept
    gd, state = nnx.split(model)
    np.testing.assert_array_equal(_logits(nnx.merge(gd, without_adapters(state)), ids, mask, px), base)


@pytest.mark.torch
@pytest.mark.slow
def test_merged_export_equals_the_adapted_model_in_transformers(hf_ckpt, tmp_path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    from visd_jax.models.hf_io import load_hf_checkpoint, save_hf_checkpoint

    d, _ = hf_ckpt
    ids, mask, px = make_batch(seed=2)
    model = add_lora(load_hf_checkpoint(d), LoraSpec(rank=2, alpha=4.0, targets=("q_proj", "v_proj", "down_proj")))
    _randomise_b(model, seed=1)
    adapted = _logits(model, ids, mask, px)
    merge_lora(model)
    assert not has_lora(model) and not nnx.state(model, nnx.LoRAParam)
    np.testing.assert_allclose(_logits(model, ids, mask, px), adapted, rtol=0, atol=1e-5)
    save_hf_checkpoint(model, tmp_path / "merged")
    back = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "merged").eval()
    ref = hf_logits(back, ids, mask, px)
    valid = mask.astype(bool)
    np.testing.assert_allclose(ref[valid], adapted[valid], rtol=0, atol=TOL)


def test_only_adapters_train_and_hold_optimizer_state():
    from visd_jax.models import Qwen25VL, Qwen25VLConfig
    from visd_jax.training.schedules import make_optimizer
    from visd_jax.training.step import Steps, init_state
    from tests.training.test_golden import _batch

    model = add_lora(Qwen25VL.create(Qwen25VLConfig.preset("tiny"), seed=0), LoraSpec(rank=2))
    graphdef, params = nnx.split(model)
    opt, _ = make_optimizer(lr=1e-2, total_steps=4)
    state = init_state(params, opt, teacher=False, trainable=nnx.LoRAParam)
    n_lora = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.LoRAParam)))
    # Adam's two moments exist for the adapters only (plus scalar counts)
    assert sum(x.size for x in jax.tree.leaves(state["opt"]) if x.ndim) == 2 * n_lora
    before = jax.tree.map(np.asarray, state["params"])
    steps = Steps(graphdef, opt, jax.tree.map(lambda x: x.sharding, state), temperature=1.0, clip_low=3e-4,
                  clip_high=4e-4, signal_clip=0.2, alpha=0.1, ema_decay=0.99, trainable=nnx.LoRAParam)
    state, m = steps.sft_update(opt)(state, _batch(np.random.default_rng(0), 4))
    assert float(m["grad_norm"]) > 0 and int(m["skipped"]) == 0
    after = jax.tree.map(np.asarray, state["params"])
    lora_b, base_b = split_trainable(before)
    lora_a, base_a = split_trainable(after)
    for x, y in zip(jax.tree.leaves(base_b), jax.tree.leaves(base_a)):
        np.testing.assert_array_equal(x, y)  # the base is frozen
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(lora_b), jax.tree.leaves(lora_a)))


def test_spec_and_config_reject_unknown_targets():
    with pytest.raises(ValueError, match="rank"):
        LoraSpec(rank=0)
    with pytest.raises(ValueError, match="targets"):
        LoraSpec(rank=2, targets=("qkv",))
    assert LoraSpec.parse_targets("attention, down_proj") == ("q_proj", "k_proj", "v_proj", "o_proj", "down_proj")
    with pytest.raises(ValueError, match="unknown LoRA target 'ffn'"):
        LoraSpec.parse_targets("ffn")
