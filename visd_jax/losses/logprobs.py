"""Per-token log-probabilities, naive and memory-bounded.

    logp[b, t] = z[b, t, y[b, t]] - logsumexp_v z[b, t, v],   z = hidden @ unembed

`token_logprobs` never materialises the [B, T, V] logits: it scans over chunks of
`chunk_size` sequence positions, keeps one [B, chunk, V] block alive at a time and, in
the backward pass, recomputes each block from the saved hidden states and per-token
log-normalisers (a custom VJP), so that both passes hold O(B * chunk * V) activations
instead of O(B * T * V). At V = 152064 (Qwen2.5-VL) the full logits of 16k tokens are
~10 GB in float32. The price is one extra [B*T, D] x [D, V] matmul (the recompute).

Gradient of logp[b, t] with respect to the logits row z[b, t, :] is onehot(y) - softmax(z),
so with cotangent g[b, t]:  dz = g * (onehot(y) - p),  dhidden = dz @ unembed^T,
dunembed = hidden^T @ dz (accumulated over chunks in float32).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from visd_jax.losses import checks
from visd_jax.parallel import shard

DEFAULT_CHUNK_SIZE = 256

_BT = ("batch", "seq")
_BTV = ("batch", "seq", "vocab")
_BTD = ("batch", "seq", "embed")


def _target_logit(logits_BxTxV: jax.Array, targets_BxT: jax.Array) -> jax.Array:
    # A masked reduction instead of take_along_axis: it partitions over a vocab-sharded
    # axis as a local sum plus one all-reduce, with no gather of the logits.
    vocab = jax.lax.broadcasted_iota(jnp.int32, logits_BxTxV.shape, 2)
    hit = vocab == targets_BxT[..., None].astype(jnp.int32)
    return jnp.sum(jnp.where(hit, logits_BxTxV, 0.0), axis=-1)


def token_logprobs_from_logits(*, logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log softmax(logits)[targets] in float32.

    Args:
      logits: [B, T, V] float (any precision; reduced in float32).
      targets: [B, T] integer token ids in [0, V).
    Returns:
      logp [B, T] float32.
    """
    checks.require_rank("logits", logits, 3, "B, T, V")
    checks.require_rank("targets", targets, 2, "B, T")
    checks.require_float("logits", logits)
    checks.require_int("targets", targets)
    checks.require_dims(
        [("logits", logits.shape[0], "targets", targets.shape[0]),
         ("logits", logits.shape[1], "targets", targets.shape[1])],
        "batch/sequence dimension",
    )
    logits_BxTxV = shard(logits.astype(jnp.float32), _BTV)
    lse_BxT = jax.nn.logsumexp(logits_BxTxV, axis=-1)
    return shard(_target_logit(logits_BxTxV, targets) - lse_BxT, _BT)


def _validate_hidden(hidden, unembed, targets, chunk_size):
    checks.require_rank("hidden", hidden, 3, "B, T, D")
    checks.require_rank("unembed", unembed, 2, "D, V")
    checks.require_rank("targets", targets, 2, "B, T")
    checks.require_float("hidden", hidden)
    checks.require_float("unembed", unembed)
    checks.require_int("targets", targets)
    checks.require_dims([("hidden", hidden.shape[2], "unembed", unembed.shape[0])], "model width D")
    checks.require_dims(
        [("hidden", hidden.shape[0], "targets", targets.shape[0]),
         ("hidden", hidden.shape[1], "targets", targets.shape[1])],
        "batch/sequence dimension",
    )
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")


def chunk_layout(seq_len: int, chunk_size: int) -> tuple[int, int]:
    """(chunk, num_chunks): the chunk never exceeds T, and T is padded to chunk*num_chunks."""
    chunk = max(1, min(chunk_size, seq_len))
    return chunk, -(-seq_len // chunk)


def to_chunks(x_BxTx: jax.Array, chunk: int, num_chunks: int) -> jax.Array:
    """[B, T, ...] -> [num_chunks, B, chunk, ...] with zero padding at the end of T."""
    b, t = x_BxTx.shape[:2]
    pad = chunk * num_chunks - t
    if pad:
        widths = [(0, 0), (0, pad)] + [(0, 0)] * (x_BxTx.ndim - 2)
        x_BxTx = jnp.pad(x_BxTx, widths)
    x = x_BxTx.reshape((b, num_chunks, chunk) + x_BxTx.shape[2:])
    return jnp.moveaxis(x, 1, 0)


def from_chunks(x_NxBxCx: jax.Array, seq_len: int) -> jax.Array:
    """Inverse of `to_chunks`: [num_chunks, B, chunk, ...] -> [B, T, ...]."""
    n, b, c = x_NxBxCx.shape[:3]
    x = jnp.moveaxis(x_NxBxCx, 0, 1).reshape((b, n * c) + x_NxBxCx.shape[3:])
    return x[:, :seq_len]


def chunk_logits(hidden_BxCxD: jax.Array, unembed_DxV: jax.Array) -> jax.Array:
    """One [B, chunk, V] block of logits, accumulated in float32 even for bf16 inputs."""
    logits = jnp.einsum(
        "bcd,dv->bcv", hidden_BxCxD, unembed_DxV, preferred_element_type=jnp.float32
    )
    return shard(logits, _BTV)


def _forward_scan(hidden, unembed, targets, chunk_size):
    t = hidden.shape[1]
    chunk, n = chunk_layout(t, chunk_size)
    h_chunks = to_chunks(hidden, chunk, n)
    y_chunks = to_chunks(targets, chunk, n)

    def body(_, xs):
        h_BxCxD, y_BxC = xs
        z_BxCxV = chunk_logits(h_BxCxD, unembed)
        lse_BxC = jax.nn.logsumexp(z_BxCxV, axis=-1)
        return None, (_target_logit(z_BxCxV, y_BxC) - lse_BxC, lse_BxC)

    _, (logp, lse) = jax.lax.scan(body, None, (h_chunks, y_chunks))
    return from_chunks(logp, t), from_chunks(lse, t)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _chunked_logprobs(hidden, unembed, targets, chunk_size):
    return _forward_scan(hidden, unembed, targets, chunk_size)[0]


def _chunked_fwd(hidden, unembed, targets, chunk_size):
    logp, lse = _forward_scan(hidden, unembed, targets, chunk_size)
    # Residuals are O(B*T*D + D*V): the inputs and one float per token, never the logits.
    return logp, (hidden, unembed, targets, lse)


def _chunked_bwd(chunk_size, residuals, g_BxT):
    hidden, unembed, targets, lse = residuals
    t = hidden.shape[1]
    chunk, n = chunk_layout(t, chunk_size)
    # Padded positions get a zero cotangent, so they add nothing to d(unembed).
    g_chunks = to_chunks(g_BxT.astype(jnp.float32), chunk, n)
    xs = (to_chunks(hidden, chunk, n), to_chunks(targets, chunk, n),
          to_chunks(lse, chunk, n), g_chunks)
    compute = hidden.dtype

    def body(dw_DxV, xs):
        h_BxCxD, y_BxC, lse_BxC, g_BxC = xs
        z_BxCxV = chunk_logits(h_BxCxD, unembed)
        vocab = jax.lax.broadcasted_iota(jnp.int32, z_BxCxV.shape, 2)
        onehot = (vocab == y_BxC[..., None].astype(jnp.int32)).astype(jnp.float32)
        dz_BxCxV = shard(g_BxC[..., None] * (onehot - jnp.exp(z_BxCxV - lse_BxC[..., None])), _BTV)
        dz = dz_BxCxV.astype(compute)
        dh_BxCxD = jnp.einsum("bcv,dv->bcd", dz, unembed, preferred_element_type=jnp.float32)
        dw_DxV = dw_DxV + jnp.einsum("bcd,bcv->dv", h_BxCxD, dz, preferred_element_type=jnp.float32)
        return dw_DxV, dh_BxCxD.astype(hidden.dtype)

    dw0 = jnp.zeros(unembed.shape, jnp.float32)
    dw, dh = jax.lax.scan(body, dw0, xs)
    return from_chunks(dh, t), dw.astype(unembed.dtype), None


_chunked_logprobs.defvjp(_chunked_fwd, _chunked_bwd)


def token_logprobs(
    *,
    hidden: jax.Array,
    unembed: jax.Array,
    targets: jax.Array,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> jax.Array:
    """log softmax(hidden @ unembed)[targets] without materialising [B, T, V] logits.

    Same value and gradient (w.r.t. `hidden` and `unembed`) as
    `token_logprobs_from_logits(logits=hidden @ unembed, targets=targets)`; peak
    activation memory is O(B * chunk_size * V) in both passes.

    Args:
      hidden: [B, T, D] final hidden states (after the last norm) at the positions that
        predict `targets`.
      unembed: [D, V] output projection (the transposed embedding when tied).
      targets: [B, T] integer token ids.
      chunk_size: sequence positions per scan step (static). Smaller saves memory; larger
        gives bigger matmuls.
    Returns:
      logp [B, T] float32.
    """
    _validate_hidden(hidden, unembed, targets, chunk_size)
    hidden = shard(hidden, _BTD)
    return shard(_chunked_logprobs(hidden, unembed, targets, chunk_size), _BT)
