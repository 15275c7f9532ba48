"""The one RL objective: GSPO-only, VisionCoach and VISD are switches of it.

    L = gspo_weight * L_GSPO(A or A_it)                         (SPEC section 4)
      + alpha * L_SD      over selected prompted rollouts of hard prompts  (section 5)
      + beta_kl * L_KL    magnitude-scaled teacher KL                      (section 6)
      + ref_kl_beta * KL(pi || pi_ref)  k3 per token, to a frozen reference (release 0.04)

    A_it = A_i ((1 - mix) + mix w_t),  w_t = clip(exp(sign(A_i) g_t), 1 - c, 1 + c)

A term is computed only when its inputs are given (static switch); its weight may be a
traced scalar, so a schedule (mix = lambda falling 0.5 -> 0) does not recompile.
  GSPO-only:    logp, old_logp, advantages, mask.
  VisionCoach:  + sd_logp, sd_mask, sd_selected (and sd_hard), alpha = 0.1.
  VISD:         + signal, mix (and optionally the kl_* inputs with beta_kl > 0).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from visd_jax.losses import checks
from visd_jax.losses.advantages import direction_magnitude_metrics, direction_magnitude_terms
from visd_jax.losses.distill import (
    magnitude_scaled_kl_from_terms,
    magnitude_scaled_kl_terms,
    prompted_rollout_nll_from_terms,
    prompted_rollout_nll_terms,
    reference_kl_from_terms,
    reference_kl_terms,
)
from visd_jax.losses.gspo import gspo_from_terms, gspo_terms


def _resolve_level(level, signal):
    if signal is None:
        return "sequence" if level is None else level
    if level not in (None, "token"):
        raise ValueError(
            f"level={level!r} cannot take the per-token advantages that `signal` produces; "
            "use level='token' (or leave it None)"
        )
    return "token"


def visd_objective_terms(
    *,
    logp, old_logp, advantages, mask,
    clip_low=3e-4, clip_high=4e-4, level=None,
    signal=None, mix=0.0, signal_clip=0.2,
    sd_logp=None, sd_mask=None, sd_selected=None, sd_hard=None, sd_weight=None,
    kl_student_logits=None, kl_teacher_logits=None, kl_magnitude=None, kl_direction="reverse",
    ref_logp=None,
) -> dict[str, jax.Array]:
    """Summable terms of every switched-on part of `visd_objective` (same arguments)."""
    level = _resolve_level(level, signal)
    terms: dict[str, jax.Array] = {}
    adv = advantages
    weights = None
    if signal is not None:
        adv, weights, dm = direction_magnitude_terms(
            advantages=advantages, signal=signal, mask=mask, clip=signal_clip, mix=mix
        )
        terms.update(dm)
    terms.update(gspo_terms(logp=logp, old_logp=old_logp, advantages=adv, mask=mask,
                            clip_low=clip_low, clip_high=clip_high, level=level))
    if sd_logp is not None:
        if sd_mask is None or sd_selected is None:
            raise ValueError("sd_logp needs sd_mask [B', T'] and sd_selected [B'] as well")
        selected = sd_selected
        if sd_hard is not None:
            checks.require_same_shape(sd_selected=sd_selected, sd_hard=sd_hard)
            selected = checks.as_mask(sd_selected) * checks.as_mask(sd_hard)
        terms.update(prompted_rollout_nll_terms(logp=sd_logp, mask=sd_mask, selected=selected, weight=sd_weight))
    if kl_student_logits is not None or kl_teacher_logits is not None:
        if kl_student_logits is None or kl_teacher_logits is None:
            raise ValueError("the KL term needs both kl_student_logits and kl_teacher_logits")
        magnitude = kl_magnitude
        if magnitude is None:
            # "m_t from the same magnitudes": the direction-magnitude weights when VISD is
            # on, otherwise an unweighted KL.
            magnitude = weights if weights is not None else jnp.ones(mask.shape, jnp.float32)
        terms.update(magnitude_scaled_kl_terms(
            student_logits=kl_student_logits, teacher_logits=kl_teacher_logits,
            magnitude=magnitude, mask=mask, direction=kl_direction,
        ))
    if ref_logp is not None:
        terms.update(reference_kl_terms(logp=logp, ref_logp=ref_logp, mask=mask))
    return terms


def visd_objective_from_terms(terms, *, gspo_weight=1.0, alpha=0.1, beta_kl=0.0, ref_kl_beta=0.0,
                              denominators=None):
    """(loss, flat metrics) from (merged) `visd_objective_terms`."""
    loss, metrics = gspo_from_terms(terms, denominators=denominators)
    loss = gspo_weight * loss
    if "visd/token_count" in terms:
        metrics.update(direction_magnitude_metrics(terms))
    if "sd/nll_sum" in terms:
        sd, m = prompted_rollout_nll_from_terms(terms, denominators=denominators)
        loss = loss + alpha * sd
        metrics.update(m)
    if "kl/loss_sum" in terms:
        kl, m = magnitude_scaled_kl_from_terms(terms, denominators=denominators)
        loss = loss + beta_kl * kl
        metrics.update(m)
    if "ref_kl/kl_sum" in terms:
        kl, m = reference_kl_from_terms(terms, denominators=denominators)
        loss = loss + ref_kl_beta * kl
        metrics.update(m)
    metrics["loss"] = loss
    return loss, metrics


def objective_denominators(*, mask, sd_mask=None, sd_selected=None, sd_hard=None):
    """The loss denominators of one micro-batch; they depend on masks only.

    Merge them over all micro-batches (`merge_terms`) and pass the result as
    `denominators=` to `visd_objective_from_terms` for exact gradient accumulation.
    """
    checks.require_rank("mask", mask, 2, "B, T")
    seqs = jnp.sum(jnp.any(mask != 0, axis=1).astype(jnp.float32))
    den = {"gspo/seq_count": seqs, "kl/seq_count": seqs, "ref_kl/seq_count": seqs}
    if sd_mask is not None:
        if sd_selected is None:
            raise ValueError("sd_mask needs sd_selected [B'] as well")
        checks.require_rank("sd_mask", sd_mask, 2, "B', T'")
        use = checks.as_mask(sd_selected) * jnp.any(sd_mask != 0, axis=1)
        if sd_hard is not None:
            use = use * checks.as_mask(sd_hard)
        den["sd/seq_count"] = jnp.sum(use)
    return den


def visd_objective(
    *,
    logp, old_logp, advantages, mask,
    clip_low=3e-4, clip_high=4e-4, level=None,
    signal=None, mix=0.0, signal_clip=0.2,
    sd_logp=None, sd_mask=None, sd_selected=None, sd_hard=None, sd_weight=None, alpha=0.1,
    kl_student_logits=None, kl_teacher_logits=None, kl_magnitude=None, kl_direction="reverse",
    beta_kl=0.0, gspo_weight=1.0, ref_logp=None, ref_kl_beta=0.0,
):
    """GSPO + alpha 1[hard] NLL + beta_T KL, with optional VISD token advantages.

    Args:
      logp, old_logp, mask: [B, T] raw-rollout log-probs (current, rollout policy), mask.
      advantages: [B] group advantages (`group_advantages(...).reshape(-1)`).
      clip_low, clip_high: GSPO eps_low / eps_high.
      level: "sequence" or "token"; None = "token" when `signal` is given, else "sequence".
      signal: [B, T] teacher token signal g_t (switches VISD on); mix: lambda;
        signal_clip: c.
      sd_logp, sd_mask: [B', T'] prompted rollouts under (x', q'); sd_selected: [B'] the
        distillation set S; sd_hard: [B'] whether the rollout's prompt was hard (ANDed with
        sd_selected); alpha: NLL weight (0.1).
      kl_student_logits, kl_teacher_logits: [B, T, V]; kl_magnitude: [B, T] (default: the
        VISD weights w_t, or 1); kl_direction; beta_kl: weight (0 = ablation off).
      gspo_weight: weight of the GSPO term (0 leaves only the distillation terms).
      ref_logp: [B, T] log-probs of the rollouts under a frozen reference policy (switches
        the reference KL on); ref_kl_beta: its weight (the VisionCoach release: 0.04).
    Returns:
      (loss, metrics): a flat dict with "loss" and "gspo/...", "visd/...", "sd/...",
      "kl/..." entries for the terms that are on.
    """
    terms = visd_objective_terms(
        logp=logp, old_logp=old_logp, advantages=advantages, mask=mask,
        clip_low=clip_low, clip_high=clip_high, level=level,
        signal=signal, mix=mix, signal_clip=signal_clip,
        sd_logp=sd_logp, sd_mask=sd_mask, sd_selected=sd_selected, sd_hard=sd_hard, sd_weight=sd_weight,
        kl_student_logits=kl_student_logits, kl_teacher_logits=kl_teacher_logits,
        kl_magnitude=kl_magnitude, kl_direction=kl_direction, ref_logp=ref_logp,
    )
    return visd_objective_from_terms(terms, gspo_weight=gspo_weight, alpha=alpha, beta_kl=beta_kl,
                                     ref_kl_beta=ref_kl_beta)
