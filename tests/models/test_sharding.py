"""Parameters created on the 8-device mesh; jitted forward and gradients equal 1 device."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from visd_jax.models import Qwen25VL, Qwen25VLConfig

GRID = np.array([[2, 4, 6]])
SECONDS = np.array([1.0], np.float32)


def _batch(cfg, B=4):
    rng = np.random.default_rng(0)
    n = int(GRID.prod() // 4)
    row = [1001, 7, cfg.vision_start_token_id] + [cfg.video_token_id] * n + [cfg.vision_end_token_id, 8, 9]
    ids = np.tile(np.array(row), (B // 2, 1))
    # Rows 2k hold the video; rows 2k+1 are text only, right-padded.
    text = rng.integers(0, 999, size=(B // 2, len(row)))
    mask_t = np.ones_like(text)
    mask_t[:, -5:] = 0
    text[:, -5:] = cfg.pad_token_id
    ids_all = np.stack([ids, text], 1).reshape(B, -1)
    mask = np.stack([np.ones_like(ids), mask_t], 1).reshape(B, -1)
    # Every video row has its own copy of the clip.
    grid = np.repeat(GRID, B // 2, 0)
    px = rng.standard_normal((int(grid.prod(1).sum()), cfg.vision.patch_dim)).astype(np.float32)
    return ids_all, mask, px, grid, np.repeat(SECONDS, B // 2)


def _loss(model, ids, mask, px, grid, sec):
    logits = model(ids, mask, px, grid, sec)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], ids[:, 1:])
    w = mask[:, 1:] * mask[:, :-1]
    return jnp.sum(ce * w) / jnp.sum(w)


def _loss_and_grad(model, batch):
    ids, mask, px, grid, sec = batch
    fn = nnx.jit(nnx.value_and_grad(lambda m, a, b, c, s: _loss(m, a, b, c, grid, s)))
    loss, grads = fn(model, ids, mask, px, sec)
    return float(loss), jax.tree.map(np.asarray, nnx.to_pure_dict(grads))


@pytest.fixture(scope="module")
def sharded_tiny(mesh8):
    return Qwen25VL.create(Qwen25VLConfig.preset("tiny"), mesh=mesh8, seed=3)


def test_parameters_are_created_sharded_by_the_rules(sharded_tiny):
    model = sharded_tiny
    layer = model.model.layers[0]
    # FSDP over fsdp on the width, heads/mlp over tensor, vocabulary over tensor.
    assert layer.self_attn.q_proj.kernel[...].sharding.spec == P("fsdp", "tensor")
    assert layer.self_attn.o_proj.kernel[...].sharding.spec == P("tensor", "fsdp")
    assert layer.mlp.down_proj.kernel[...].sharding.spec == P("tensor", "fsdp")
    assert model.model.embed_tokens[...].sharding.spec == P("tensor", "fsdp")
    assert model.lm_head[...].sharding.spec == P("fsdp", "tensor")
    assert layer.input_layernorm.weight[...].sharding.spec == P(None)
    # A parameter shard really is a fraction of the tensor on each device.
    shard_shape = layer.mlp.gate_proj.kernel[...].addressable_shards[0].data.shape
    assert shard_shape == (32, 64)


@pytest.mark.slow
def test_forward_and_gradient_on_mesh_equal_single_device(mesh8, sharded_tiny):
    cfg = Qwen25VLConfig.preset("tiny")
    batch = _batch(cfg)
    single = Qwen25VL.create(cfg, seed=3)
    sharded = sharded_tiny
    for a, b in zip(jax.tree.leaves(nnx.state(single)), jax.tree.leaves(nnx.state(sharded))):
        # Same random init; jit fusion may change the last bit of the normal sampler.
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-8)
    # Then compare on identical values, each kept on its own placement.
    state8 = nnx.state(sharded)
    nnx.update(sharded, jax.tree.map(lambda a, b: jax.device_put(np.asarray(a), b.sharding),
                                     nnx.state(single), state8))
    loss1, g1 = _loss_and_grad(single, batch)
    with jax.set_mesh(mesh8):
        loss8, g8 = _loss_and_grad(sharded, batch)
    # float32: only the summation order differs across the 8 shards.
    np.testing.assert_allclose(loss8, loss1, rtol=1e-5)
    flat1, flat8 = jax.tree.leaves_with_path(g1), jax.tree.leaves(g8)
    for (path, a), b in zip(flat1, flat8):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
    assert sum(np.abs(a).sum() for _, a in flat1) > 0


@pytest.mark.slow
def test_bfloat16_parameters_and_remat(mesh8):
    cfg = Qwen25VLConfig.preset("tiny")
    ids, mask, px, grid, sec = _batch(cfg, B=2)
    f32 = Qwen25VL.create(cfg, seed=1)
    bf16 = Qwen25VL.create(cfg, seed=1, param_dtype="bfloat16", remat=True)
    assert bf16.model.layers[0].mlp.up_proj.kernel[...].dtype == jnp.bfloat16
    fwd = nnx.jit(lambda m, a, b, c, s: m(a, b, c, grid, s))
    out32 = np.asarray(fwd(f32, ids, mask, px, sec))
    out16 = np.asarray(fwd(bf16, ids, mask, px, sec).astype(jnp.float32))
    v = mask.astype(bool)
    # bfloat16 has 8 mantissa bits: relative error ~2^-8 per op, a few ops deep.
    scale = np.abs(out32[v]).max()
    assert np.abs(out16[v] - out32[v]).max() <= 0.05 * scale
    with pytest.raises(ValueError, match="dtype must be one of"):
        Qwen25VL.create(cfg, param_dtype="float16")
