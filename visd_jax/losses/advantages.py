"""Rollout advantages: group normalisation (GRPO/GSPO) and VISD direction-magnitude.

Sources: group normalisation as in SPEC section 3 (both reference trainers, unbiased
std); direction-magnitude decoupling from VISD (Lin et al., 2026, SPEC section 6).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from visd_jax.losses import checks
from visd_jax.losses.terms import safe_ratio
from visd_jax.parallel import shard


def _acc_dtype(x):
    # float32 accumulation for bf16/f16 inputs; float64 stays float64 when enabled.
    return jnp.promote_types(jnp.result_type(x), jnp.float32)


def group_advantages(*, rewards: jax.Array, eps: float = 1e-4, ddof: int = 1) -> jax.Array:
    """A[n, g] = (R[n, g] - mean_g R[n]) / (std_g R[n] + eps)  (SPEC section 3).

    Args:
      rewards: [N, G] rewards of the G rollouts of each of N prompts.
      eps: added to the std (1e-4 in both reference trainers).
      ddof: 1 = unbiased std, as the references; needs G > ddof.
    Returns:
      [N, G] advantages in float32 (or wider). A group whose rewards are all equal gets
      exactly zero: it carries no learning signal, and the centred values there are
      rounding noise that must not be amplified by 1 / eps.
    """
    checks.require_rank("rewards", rewards, 2, "N, G")
    checks.require_float("rewards", rewards)
    n_group = rewards.shape[1]
    if n_group <= ddof:
        raise ValueError(
            f"rewards has G={n_group} rollouts per group (shape {tuple(rewards.shape)}); the std "
            f"with ddof={ddof} needs G > {ddof}"
        )
    r_NxG = shard(rewards.astype(_acc_dtype(rewards)), ("batch", None))
    mean_N = jnp.mean(r_NxG, axis=1, keepdims=True)
    centred = r_NxG - mean_N
    std_N = jnp.sqrt(jnp.sum(centred * centred, axis=1, keepdims=True) / (n_group - ddof))
    equal = jnp.max(r_NxG, axis=1, keepdims=True) == jnp.min(r_NxG, axis=1, keepdims=True)
    return jnp.where(equal, 0.0, centred / (std_N + eps))


def _broadcast_advantages(advantages, shape_BxT):
    if advantages.ndim == 1:
        checks.require_dims([("advantages", advantages.shape[0], "mask", shape_BxT[0])], "batch dimension B")
        return jnp.broadcast_to(advantages[:, None], shape_BxT)
    checks.require_same_shape(advantages=advantages, mask=jnp.zeros(shape_BxT))
    return advantages


def direction_magnitude_terms(*, advantages, signal, mask, clip=0.2, mix):
    """(token_advantages, weights, terms) with summable metric terms; see below."""
    checks.require_rank("signal", signal, 2, "B, T")
    checks.require_rank("mask", mask, 2, "B, T")
    checks.require_float("signal", signal)
    checks.require_float("advantages", advantages)
    checks.require_mask("mask", mask)
    checks.require_same_shape(signal=signal, mask=mask)
    if jnp.ndim(advantages) not in (1, 2):
        raise ValueError(f"advantages must have shape [B] or [B, T], got {tuple(jnp.shape(advantages))}")
    if isinstance(clip, (int, float)) and not 0.0 <= clip < 1.0:
        raise ValueError(f"clip must be in [0, 1), got {clip}")
    m_BxT = checks.as_mask(mask)
    a_BxT = _broadcast_advantages(advantages.astype(jnp.float32), mask.shape)
    # The teacher signal sets magnitudes only: no gradient flows into the teacher/student
    # through it (SPEC section 6, "g_t is detached").
    g_BxT = jax.lax.stop_gradient(signal.astype(jnp.float32))
    a_det = jax.lax.stop_gradient(a_BxT)
    raw = jnp.exp(jnp.sign(a_det) * g_BxT)
    w_BxT = jnp.where(m_BxT > 0, jnp.clip(raw, 1.0 - clip, 1.0 + clip), 1.0)
    token_adv = a_BxT * ((1.0 - mix) + mix * w_BxT)
    terms = {
        "visd/token_count": jnp.sum(m_BxT),
        "visd/weight_sum": jnp.sum(m_BxT * w_BxT),
        "visd/weight_clip_low_sum": jnp.sum(m_BxT * (raw < 1.0 - clip)),
        "visd/weight_clip_high_sum": jnp.sum(m_BxT * (raw > 1.0 + clip)),
        "visd/signal_sum": jnp.sum(m_BxT * g_BxT),
        "visd/signal_abs_sum": jnp.sum(m_BxT * jnp.abs(g_BxT)),
    }
    return shard(token_adv, ("batch", "seq")), w_BxT, terms


def direction_magnitude_metrics(terms):
    n = terms["visd/token_count"]
    return {
        "visd/weight_mean": safe_ratio(terms["visd/weight_sum"], n),
        "visd/weight_clip_frac_low": safe_ratio(terms["visd/weight_clip_low_sum"], n),
        "visd/weight_clip_frac_high": safe_ratio(terms["visd/weight_clip_high_sum"], n),
        "visd/signal_mean": safe_ratio(terms["visd/signal_sum"], n),
        "visd/signal_abs_mean": safe_ratio(terms["visd/signal_abs_sum"], n),
    }


def direction_magnitude_advantages(*, advantages, signal, mask, clip=0.2, mix):
    """VISD token advantages: the rollout sets the direction, the teacher the magnitude.

        w_t   = clip(exp(sign(A_i) * g_t), 1 - c, 1 + c)
        A_it  = A_i * ((1 - mix) + mix * w_t)

    (Lin et al., 2026, VISD; SPEC section 6: c = 0.2, mix = lambda falling 0.5 -> 0 over
    600 steps.) `g_t` is detached; masked tokens keep weight 1. Since w_t > 0, A_it never
    changes the sign of A_i; mix = 0 gives A_it = A_i exactly (plain GSPO).

    Args:
      advantages: [B] per-sequence (or [B, T] per-token) advantages.
      signal: [B, T] teacher token signal g_t (see `token_signal`).
      mask: [B, T] response-token mask.
      clip: c, the half-width of the weight band.
      mix: lambda in [0, 1]; may be a traced scalar (a schedule).
    Returns:
      (token_advantages [B, T] float32, weights [B, T] float32, metrics dict).
    """
    token_adv, w, terms = direction_magnitude_terms(
        advantages=advantages, signal=signal, mask=mask, clip=clip, mix=mix
    )
    return token_adv, w, direction_magnitude_metrics(terms)
