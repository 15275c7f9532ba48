"""GSPO: group sequence policy optimisation, sequence- and token-level (SPEC section 4).

Source: Zheng et al., 2025, "Group Sequence Policy Optimization".

    s_i  = exp( (1/|y_i|) sum_t m_it [log pi(y_it) - log pi_old(y_it)] )
    l_i  = -min( s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i )         (sequence)
    s_it = sg[s_i] * pi(y_it) / sg[pi(y_it)]
    l_i  = -(1/|y_i|) sum_t m_it min( s_it A_it, clip(s_it, ...) A_it )       (token)
    loss = mean over sequences with |y_i| > 0 of l_i

With A_it = A_i the token form has the same value and gradient as the sequence form;
it exists so VISD can give each token its own advantage. Sequences with an empty mask
are left out of the mean (their ratio is undefined); an all-empty batch gives loss 0.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from visd_jax.losses import checks
from visd_jax.losses.terms import pick_denominator, safe_ratio
from visd_jax.parallel import shard

LEVELS = ("sequence", "token")


def _validate(logp, old_logp, advantages, mask, clip_low, clip_high, level):
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    for name, x in (("logp", logp), ("old_logp", old_logp)):
        checks.require_rank(name, x, 2, "B, T")
        checks.require_float(name, x)
    checks.require_rank("mask", mask, 2, "B, T")
    checks.require_mask("mask", mask)
    checks.require_same_shape(logp=logp, old_logp=old_logp, mask=mask)
    checks.require_float("advantages", advantages)
    if level == "sequence" or jnp.ndim(advantages) == 1:
        checks.require_rank("advantages", advantages, 1, "B" if level == "sequence" else "B] or [B, T")
        checks.require_dims([("advantages", advantages.shape[0], "logp", logp.shape[0])], "batch dimension B")
    else:
        checks.require_rank("advantages", advantages, 2, "B, T")
        checks.require_same_shape(advantages=advantages, logp=logp)
    for name, v in (("clip_low", clip_low), ("clip_high", clip_high)):
        if isinstance(v, (int, float)) and not 0.0 <= v < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {v}")


def _clipped_objective(ratio, adv, clip_low, clip_high):
    # Returns the per-unit loss and where the clip binds (zero gradient): below the band
    # for negative advantages, above it for positive ones.
    clipped = jnp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = -jnp.minimum(ratio * adv, clipped * adv)
    low = (ratio < 1.0 - clip_low) & (adv < 0)
    high = (ratio > 1.0 + clip_high) & (adv > 0)
    return loss, low.astype(jnp.float32), high.astype(jnp.float32)


def gspo_terms(
    *,
    logp: jax.Array,
    old_logp: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
    level: str = "sequence",
) -> dict[str, jax.Array]:
    """Summable terms of `gspo_loss` (see `visd_jax.losses.terms` for merging)."""
    _validate(logp, old_logp, advantages, mask, clip_low, clip_high, level)
    m_BxT = shard(checks.as_mask(mask), ("batch", "seq"))
    on = m_BxT > 0
    # Padding may hold -inf or NaN log-probs: zero them before any arithmetic so that
    # neither the value nor the gradient sees them.
    lp = jnp.where(on, logp.astype(jnp.float32), 0.0)
    old = jnp.where(on, jax.lax.stop_gradient(old_logp).astype(jnp.float32), 0.0)
    adv = jax.lax.stop_gradient(advantages.astype(jnp.float32))
    len_B = jnp.sum(m_BxT, axis=1)
    valid_B = (len_B > 0).astype(jnp.float32)
    inv_len_B = 1.0 / jnp.maximum(len_B, 1.0)
    log_s_B = jnp.sum(lp - old, axis=1) * inv_len_B
    s_B = jnp.exp(log_s_B)

    if level == "sequence":
        l_B, low, high = _clipped_objective(s_B, adv, clip_low, clip_high)
        clip_w = valid_B
    else:
        adv_BxT = adv[:, None] if adv.ndim == 1 else adv
        adv_BxT = jnp.broadcast_to(adv_BxT, lp.shape)
        s_BxT = jax.lax.stop_gradient(s_B)[:, None] * jnp.exp(lp - jax.lax.stop_gradient(lp))
        l_BxT, low, high = _clipped_objective(s_BxT, adv_BxT, clip_low, clip_high)
        l_B = jnp.sum(m_BxT * l_BxT, axis=1) * inv_len_B
        clip_w = m_BxT

    loss_sum = jnp.sum(valid_B * l_B)
    s_valid = jax.lax.stop_gradient(s_B)
    bad = (~jnp.isfinite(logp) | ~jnp.isfinite(old_logp)) & on
    adv_bad = ~jnp.isfinite(advantages)
    nonfinite = jnp.any(bad) | jnp.any(adv_bad) | ~jnp.isfinite(loss_sum)
    return {
        "gspo/loss_sum": loss_sum,
        "gspo/seq_count": jnp.sum(valid_B),
        "gspo/token_count": jnp.sum(m_BxT),
        "gspo/clip_low_sum": jnp.sum(clip_w * low),
        "gspo/clip_high_sum": jnp.sum(clip_w * high),
        "gspo/clip_unit_count": jnp.sum(clip_w),
        "gspo/ratio_sum": jnp.sum(valid_B * s_valid),
        "gspo/ratio_min": jnp.min(jnp.where(valid_B > 0, s_valid, jnp.inf)),
        "gspo/ratio_max": jnp.max(jnp.where(valid_B > 0, s_valid, -jnp.inf)),
        "gspo/nonfinite_any": nonfinite.astype(jnp.float32),
    }


def gspo_from_terms(terms, *, denominators=None):
    """(loss, metrics) from (merged) `gspo_terms`; `denominators` for grad accumulation."""
    seqs = terms["gspo/seq_count"]
    units = terms["gspo/clip_unit_count"]
    loss = safe_ratio(terms["gspo/loss_sum"], pick_denominator(terms, denominators, "gspo/seq_count"))
    has = seqs > 0
    metrics = {
        "gspo/loss": loss,
        "gspo/clip_frac_low": safe_ratio(terms["gspo/clip_low_sum"], units),
        "gspo/clip_frac_high": safe_ratio(terms["gspo/clip_high_sum"], units),
        "gspo/ratio_mean": jnp.where(has, safe_ratio(terms["gspo/ratio_sum"], seqs), 1.0),
        "gspo/ratio_min": jnp.where(has, terms["gspo/ratio_min"], 1.0),
        "gspo/ratio_max": jnp.where(has, terms["gspo/ratio_max"], 1.0),
        "gspo/nonfinite": terms["gspo/nonfinite_any"],
        "gspo/num_sequences": seqs,
        "gspo/num_tokens": terms["gspo/token_count"],
    }
    return loss, metrics


def gspo_loss(
    *,
    logp: jax.Array,
    old_logp: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
    level: str = "sequence",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """GSPO loss (formula in the module docstring) and its metrics.

    Args:
      logp: [B, T] log pi_theta of the sampled tokens (differentiated).
      old_logp: [B, T] log pi_old of the same tokens (the rollout policy; detached).
      advantages: [B] per-sequence advantages; with level="token" also [B, T].
      mask: [B, T] response-token mask (bool or 0/1).
      clip_low, clip_high: eps_low, eps_high (paper: 3e-4, 4e-4).
      level: "sequence" (GSPO) or "token" (GSPO-token).
    Returns:
      (loss, metrics). Metrics: clip_frac_low / clip_frac_high = share of units
      (sequences, or tokens at level="token") where the clip binds (ratio below the band
      with A < 0, above it with A > 0); ratio_mean/min/max over non-empty sequences (1.0
      when there are none); nonfinite = 1.0 if any unmasked log-prob, any advantage or the
      loss is NaN/Inf.
    """
    terms = gspo_terms(
        logp=logp, old_logp=old_logp, advantages=advantages, mask=mask,
        clip_low=clip_low, clip_high=clip_high, level=level,
    )
    return gspo_from_terms(terms)
