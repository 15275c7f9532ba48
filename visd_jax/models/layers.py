"""Building blocks shared by the vision tower and the decoder.

Every parameter carries its LOGICAL axis names (from `visd_jax.parallel.RULES`) in the
`out_sharding` metadata; `model.param_shardings` resolves them to mesh axes with
`logical_to_spec`, so placement is decided by the one table and nowhere else.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

_INIT_STD = 0.02  # transformers' initializer_range for Qwen2.5-VL


def param(rngs: nnx.Rngs | None, shape: Sequence[int], dtype, names: tuple, *, init: str = "normal") -> nnx.Param:
    """An nnx.Param with logical axis names as sharding metadata."""
    if len(names) != len(shape):
        raise ValueError(f"logical names {names} do not match parameter shape {tuple(shape)}")
    if init == "normal":
        value = _INIT_STD * jax.random.normal(rngs.params(), shape, jnp.float32)
    elif init == "ones":
        value = jnp.ones(shape, jnp.float32)
    elif init == "zeros":
        value = jnp.zeros(shape, jnp.float32)
    else:  # pragma: no cover - internal
        raise ValueError(f"unknown init {init!r}")
    return nnx.Param(value.astype(dtype), out_sharding=tuple(names))


class Dense(nnx.Module):
    """y = x @ kernel (+ bias); kernel is [in, out] (the transpose of torch's Linear.weight)."""

    def __init__(self, din: int, dout: int, *, names: tuple[str | None, str | None], bias: bool,
                 bias_name: str | None = None, param_dtype, rngs: nnx.Rngs):
        self.kernel = param(rngs, (din, dout), param_dtype, names)
        self.bias = param(rngs, (dout,), param_dtype, (bias_name or names[1],), init="zeros") if bias else None
        self.lora, self.lora_scale = nnx.data(None), 0.0  # an nnx.LoRA adapter (models/lora.py), off by default

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...].astype(x.dtype)
        y = jnp.einsum("...i,io->...o", x, kernel)
        if self.bias is not None:
            y = y + self.bias[...].astype(x.dtype)
        if self.lora is not None:
            a = self.lora.lora_a[...].astype(x.dtype)
            b = self.lora.lora_b[...].astype(x.dtype)
            y = y + (self.lora_scale * ((x @ a) @ b)).astype(y.dtype)
        return y


class RMSNorm(nnx.Module):
    """x / sqrt(mean(x^2) + eps) * weight, normalised in float32 (as Qwen2RMSNorm)."""

    def __init__(self, dim: int, *, eps: float, param_dtype):
        self.weight = nnx.Param(jnp.ones((dim,), param_dtype), out_sharding=("norm",))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.weight[...].astype(x.dtype) * x32.astype(x.dtype)


class SwiGLU(nnx.Module):
    """down(silu(gate(x)) * up(x))."""

    def __init__(self, dim: int, hidden: int, *, bias: bool, param_dtype, rngs: nnx.Rngs):
        kw = dict(bias=bias, param_dtype=param_dtype, rngs=rngs)
        self.gate_proj = Dense(dim, hidden, names=("embed", "mlp"), **kw)
        self.up_proj = Dense(dim, hidden, names=("embed", "mlp"), **kw)
        self.down_proj = Dense(hidden, dim, names=("mlp", "embed"), bias_name="norm", **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


def rotate_half(x: jax.Array) -> jax.Array:
    half = x.shape[-1] // 2
    return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x_BxTxHxK: jax.Array, cos_BxTxK: jax.Array, sin_BxTxK: jax.Array) -> jax.Array:
    """x cos + rotate_half(x) sin, in float32 (RoFormer, Su et al. 2021)."""
    x32 = x_BxTxHxK.astype(jnp.float32)
    cos, sin = cos_BxTxK[..., None, :], sin_BxTxK[..., None, :]
    return (x32 * cos + rotate_half(x32) * sin).astype(x_BxTxHxK.dtype)


def attention(q_BxTxHxK, k_BxSxGxK, v_BxSxGxK, allowed_BxTxS: jax.Array | None) -> jax.Array:
    """softmax(q k^T / sqrt(K) + mask) v with grouped-query heads (H = G * rep).

    Query head h reads key/value head h // rep, as transformers' repeat_kv. Scores and
    softmax in float32; a masked score is the dtype minimum (not -inf) so a row with no
    allowed key (a padding query) stays finite.
    """
    B, T, H, K = q_BxTxHxK.shape
    G = k_BxSxGxK.shape[2]
    rep = H // G
    q = q_BxTxHxK.reshape(B, T, G, rep, K)
    scores = jnp.einsum("btgrk,bsgk->bgrts", q, k_BxSxGxK, preferred_element_type=jnp.float32)
    scores = scores * (K ** -0.5)
    if allowed_BxTxS is not None:
        scores = jnp.where(allowed_BxTxS[:, None, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v_BxSxGxK.dtype)
    out = jnp.einsum("bgrts,bsgk->btgrk", probs, v_BxSxGxK)
    return out.reshape(B, T, H, K)
