"""VISD teacher token signal g_t = log p_T(y_t) - log p_S(y_t) (SPEC section 6).

Source: Lin et al., 2026 (VISD), release defaults mode="topk", K = 16, gamma = 0.

  sampled:  g_t = log softmax(z_T)[y_t] - log softmax(z_S)[y_t]      (full vocabulary)
  topk:     S_t = topK(z_T) U {y_t}; both distributions renormalised over S_t:
            g_t = (z_T[y_t] - logsumexp_{S_t} z_T) - (z_S[y_t] - logsumexp_{S_t} z_S)
  gamma:    in topk mode, g_t = (1 - gamma) g_topk + gamma g_sampled (gamma = 0: pure top-K)

The signal only scales advantages, so it is always detached (stop_gradient).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from visd_jax.losses import checks
from visd_jax.losses.logprobs import (
    DEFAULT_CHUNK_SIZE,
    _target_logit,
    chunk_layout,
    chunk_logits,
    from_chunks,
    to_chunks,
)
from visd_jax.parallel import shard

MODES = ("topk", "sampled")


def _check_options(mode, top_k, gamma, vocab):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "topk":
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= vocab:
            raise ValueError(f"top_k must be an int in [1, V={vocab}], got {top_k!r}")
    if isinstance(gamma, (int, float)) and not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")


def _signal_block(z_s, z_t, y, mode, top_k, gamma):
    """Signal for one [B, C, V] block of float32 logits."""
    zs_y = _target_logit(z_s, y)
    zt_y = _target_logit(z_t, y)
    sampled = (zt_y - jax.nn.logsumexp(z_t, axis=-1)) - (zs_y - jax.nn.logsumexp(z_s, axis=-1))
    if mode == "sampled":
        return sampled
    zt_k, idx = jax.lax.top_k(z_t, top_k)
    zs_k = jnp.take_along_axis(z_s, idx, axis=-1)
    in_top = jnp.any(idx == y[..., None].astype(idx.dtype), axis=-1)
    # The sampled token joins the support only when the teacher's top-K missed it, so it
    # is never counted twice.
    extra_t = jnp.where(in_top, -jnp.inf, zt_y)[..., None]
    extra_s = jnp.where(in_top, -jnp.inf, zs_y)[..., None]
    lse_t = jax.nn.logsumexp(jnp.concatenate([zt_k, extra_t], axis=-1), axis=-1)
    lse_s = jax.nn.logsumexp(jnp.concatenate([zs_k, extra_s], axis=-1), axis=-1)
    topk = (zt_y - lse_t) - (zs_y - lse_s)
    return (1.0 - gamma) * topk + gamma * sampled


def token_signal_from_logits(
    *,
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    targets: jax.Array,
    mode: str = "topk",
    top_k: int = 16,
    gamma: float = 0.0,
) -> jax.Array:
    """Teacher-minus-student log-prob of the sampled tokens (formulas: module docstring).

    Args:
      student_logits, teacher_logits: [B, T, V] logits at the response positions (the
        teacher sees the privileged prompt, so its positions are already aligned).
      targets: [B, T] sampled token ids.
      mode: "topk" (renormalised over teacher top-K plus the sampled token) or "sampled".
      top_k: K, static.
      gamma: weight of the sampled-token signal in topk mode.
    Returns:
      g [B, T] float32, detached.
    """
    checks.require_rank("student_logits", student_logits, 3, "B, T, V")
    checks.require_rank("teacher_logits", teacher_logits, 3, "B, T, V")
    checks.require_rank("targets", targets, 2, "B, T")
    checks.require_float("student_logits", student_logits)
    checks.require_float("teacher_logits", teacher_logits)
    checks.require_int("targets", targets)
    checks.require_same_shape(student_logits=student_logits, teacher_logits=teacher_logits)
    checks.require_dims(
        [("student_logits", student_logits.shape[0], "targets", targets.shape[0]),
         ("student_logits", student_logits.shape[1], "targets", targets.shape[1])],
        "batch/sequence dimension",
    )
    _check_options(mode, top_k, gamma, student_logits.shape[2])
    z_s = shard(jax.lax.stop_gradient(student_logits).astype(jnp.float32), ("batch", "seq", "vocab"))
    z_t = shard(jax.lax.stop_gradient(teacher_logits).astype(jnp.float32), ("batch", "seq", "vocab"))
    return shard(_signal_block(z_s, z_t, targets, mode, top_k, gamma), ("batch", "seq"))


def token_signal(
    *,
    student_hidden: jax.Array,
    teacher_hidden: jax.Array,
    student_unembed: jax.Array,
    teacher_unembed: jax.Array,
    targets: jax.Array,
    mode: str = "topk",
    top_k: int = 16,
    gamma: float = 0.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> jax.Array:
    """`token_signal_from_logits` of `hidden @ unembed`, chunked over the sequence.

    Scans over `chunk_size` positions at a time so that only [B, chunk, V] logits of each
    model exist at once. Forward only: the result is detached, so there is no backward.

    Args:
      student_hidden: [B, T, Ds]; teacher_hidden: [B, T, Dt] final hidden states.
      student_unembed: [Ds, V]; teacher_unembed: [Dt, V].
      targets: [B, T] sampled token ids.
      mode, top_k, gamma: as in `token_signal_from_logits`.
      chunk_size: positions per scan step (static).
    Returns:
      g [B, T] float32, detached.
    """
    for name, x, dims in (("student_hidden", student_hidden, "B, T, D"),
                          ("teacher_hidden", teacher_hidden, "B, T, D"),
                          ("student_unembed", student_unembed, "D, V"),
                          ("teacher_unembed", teacher_unembed, "D, V")):
        checks.require_rank(name, x, len(dims.split(",")), dims)
        checks.require_float(name, x)
    checks.require_rank("targets", targets, 2, "B, T")
    checks.require_int("targets", targets)
    checks.require_dims(
        [("student_hidden", student_hidden.shape[2], "student_unembed", student_unembed.shape[0]),
         ("teacher_hidden", teacher_hidden.shape[2], "teacher_unembed", teacher_unembed.shape[0]),
         ("student_unembed", student_unembed.shape[1], "teacher_unembed", teacher_unembed.shape[1])],
        "model width / vocabulary",
    )
    checks.require_dims(
        [("student_hidden", student_hidden.shape[0], "targets", targets.shape[0]),
         ("student_hidden", student_hidden.shape[1], "targets", targets.shape[1]),
         ("teacher_hidden", teacher_hidden.shape[0], "targets", targets.shape[0]),
         ("teacher_hidden", teacher_hidden.shape[1], "targets", targets.shape[1])],
        "batch/sequence dimension",
    )
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    _check_options(mode, top_k, gamma, student_unembed.shape[1])
    sg = jax.lax.stop_gradient
    w_s, w_t = sg(student_unembed), sg(teacher_unembed)
    t = targets.shape[1]
    chunk, n = chunk_layout(t, chunk_size)
    xs = (to_chunks(sg(student_hidden), chunk, n), to_chunks(sg(teacher_hidden), chunk, n),
          to_chunks(targets, chunk, n))

    def body(_, xs):
        h_s, h_t, y = xs
        return None, _signal_block(chunk_logits(h_s, w_s), chunk_logits(h_t, w_t), y, mode, top_k, gamma)

    _, g = jax.lax.scan(body, None, xs)
    return shard(from_chunks(g, t), ("batch", "seq"))
