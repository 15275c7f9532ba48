"""Distillation terms: VisionCoach's prompted-rollout NLL and VISD's optional teacher KL.

Both aggregate like GSPO: token mean within a sequence, then mean over the sequences
that count, so they add to the GSPO loss on the same scale.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from visd_jax.losses import checks
from visd_jax.losses.terms import pick_denominator, safe_ratio
from visd_jax.parallel import shard

DIRECTIONS = ("reverse", "forward")


def prompted_rollout_nll_terms(*, logp, mask, selected, weight=None):
    """Summable terms of `prompted_rollout_nll`."""
    checks.require_rank("logp", logp, 2, "B, T")
    checks.require_rank("mask", mask, 2, "B, T")
    checks.require_rank("selected", selected, 1, "B")
    checks.require_float("logp", logp)
    checks.require_mask("mask", mask)
    checks.require_mask("selected", selected)
    checks.require_same_shape(logp=logp, mask=mask)
    checks.require_dims([("selected", selected.shape[0], "logp", logp.shape[0])], "batch dimension B")
    m_BxT = shard(checks.as_mask(mask), ("batch", "seq"))
    len_B = jnp.sum(m_BxT, axis=1)
    use_B = checks.as_mask(selected) * (len_B > 0)
    # where() before the sum: padding may hold -inf, and 0 * -inf would poison the value
    # and the gradient even for unselected rows.
    lp = jnp.where((m_BxT * use_B[:, None]) > 0, logp.astype(jnp.float32), 0.0)
    nll_B = -jnp.sum(lp, axis=1) / jnp.maximum(len_B, 1.0)
    terms = {
        "sd/nll_sum": jnp.sum(use_B * nll_B),
        "sd/seq_count": jnp.sum(use_B),
        "sd/token_count": jnp.sum(m_BxT * use_B[:, None]),
    }
    if weight is not None:
        checks.require_rank("weight", weight, 1, "B")
        checks.require_float("weight", weight)
        checks.require_dims([("weight", weight.shape[0], "logp", logp.shape[0])], "batch dimension B")
        terms["sd/weighted_nll_sum"] = jnp.sum(use_B * weight.astype(jnp.float32) * nll_B)
    return terms


def prompted_rollout_nll_from_terms(terms, *, denominators=None):
    den = pick_denominator(terms, denominators, "sd/seq_count")
    mean = safe_ratio(terms["sd/nll_sum"], den)
    # weighted: the weights carry the normalisation (e.g. 1 / (|S_p| * prompts)); the mean
    # NLL stays the metric, comparable across weightings
    loss = terms["sd/weighted_nll_sum"] if "sd/weighted_nll_sum" in terms else mean
    return loss, {"sd/nll": mean, "sd/loss": loss, "sd/num_selected": terms["sd/seq_count"],
                  "sd/num_tokens": terms["sd/token_count"]}


def prompted_rollout_nll(*, logp, mask, selected, weight=None):
    """VisionCoach self-distillation loss (Lee et al., 2026, Algorithm 1; SPEC section 5).

        L_SD = (1/|S|) sum_{i in S} -(1/|y_i|) sum_t m_it log pi(y_it | x', q')
        or, with `weight`:  sum_{i in S} w_i * -(1/|y_i|) sum_t m_it log pi(y_it | x', q')

    Args:
      logp: [B, T] log-probs of the prompted rollouts' tokens under the current policy,
        conditioned on the prompted video and question.
      mask: [B, T] response-token mask.
      selected: [B] bool, the set S (rollouts kept for distillation). Selected rows with
        an empty mask are ignored.
      weight: [B] float or None; each row's weight, carrying the normalisation (the
        release's per-prompt mean over the step's prompts: 1 / (|S_p| * prompts)).
    Returns:
      (loss, metrics); loss is exactly 0 with zero gradient when S is empty.
    """
    return prompted_rollout_nll_from_terms(
        prompted_rollout_nll_terms(logp=logp, mask=mask, selected=selected, weight=weight)
    )


def magnitude_scaled_kl_terms(*, student_logits, teacher_logits, magnitude, mask, direction="reverse"):
    """Summable terms of `magnitude_scaled_kl`."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    checks.require_rank("student_logits", student_logits, 3, "B, T, V")
    checks.require_rank("teacher_logits", teacher_logits, 3, "B, T, V")
    checks.require_rank("magnitude", magnitude, 2, "B, T")
    checks.require_rank("mask", mask, 2, "B, T")
    for name, x in (("student_logits", student_logits), ("teacher_logits", teacher_logits),
                    ("magnitude", magnitude)):
        checks.require_float(name, x)
    checks.require_mask("mask", mask)
    checks.require_same_shape(student_logits=student_logits, teacher_logits=teacher_logits)
    checks.require_same_shape(magnitude=magnitude, mask=mask)
    checks.require_dims(
        [("student_logits", student_logits.shape[0], "mask", mask.shape[0]),
         ("student_logits", student_logits.shape[1], "mask", mask.shape[1])],
        "batch/sequence dimension",
    )
    names = ("batch", "seq", "vocab")
    ls = jax.nn.log_softmax(shard(student_logits.astype(jnp.float32), names), axis=-1)
    lt = jax.nn.log_softmax(
        shard(jax.lax.stop_gradient(teacher_logits).astype(jnp.float32), names), axis=-1
    )
    if direction == "reverse":
        kl_BxT = jnp.sum(jnp.exp(ls) * (ls - lt), axis=-1)
    else:
        kl_BxT = jnp.sum(jnp.exp(lt) * (lt - ls), axis=-1)
    m_BxT = checks.as_mask(mask)
    on = m_BxT > 0
    mag = jax.lax.stop_gradient(magnitude.astype(jnp.float32))
    kl_BxT = jnp.where(on, kl_BxT, 0.0)
    len_B = jnp.sum(m_BxT, axis=1)
    valid_B = (len_B > 0).astype(jnp.float32)
    per_seq = jnp.sum(jnp.where(on, mag, 0.0) * kl_BxT, axis=1) / jnp.maximum(len_B, 1.0)
    return {
        "kl/loss_sum": jnp.sum(valid_B * per_seq),
        "kl/seq_count": jnp.sum(valid_B),
        "kl/value_sum": jax.lax.stop_gradient(jnp.sum(kl_BxT)),
        "kl/token_count": jnp.sum(m_BxT),
    }


def magnitude_scaled_kl_from_terms(terms, *, denominators=None):
    den = pick_denominator(terms, denominators, "kl/seq_count")
    loss = safe_ratio(terms["kl/loss_sum"], den)
    return loss, {"kl/loss": loss,
                  "kl/token_kl_mean": safe_ratio(terms["kl/value_sum"], terms["kl/token_count"])}


def magnitude_scaled_kl(*, student_logits, teacher_logits, magnitude, mask, direction="reverse"):
    """VISD's optional explicit teacher KL, weighted per token (SPEC section 6 ablation).

        KL_t = sum_v p_S(v) [log p_S(v) - log p_T(v)]        (direction="reverse")
        KL_t = sum_v p_T(v) [log p_T(v) - log p_S(v)]        (direction="forward")
        L    = mean_i (1/|y_i|) sum_t m_it * magnitude_it * KL_t

    Source: Lin et al., 2026 (VISD), the "magnitude-scaled KL" knob (default off). The
    teacher and the magnitudes are detached; gradients reach the student logits only.

    Args:
      student_logits, teacher_logits: [B, T, V].
      magnitude: [B, T] per-token weights (e.g. the direction-magnitude weights w_t).
      mask: [B, T] response-token mask.
      direction: "reverse" = KL(student || teacher) (SPEC), or "forward".
    Returns:
      (loss, metrics).
    """
    return magnitude_scaled_kl_from_terms(magnitude_scaled_kl_terms(
        student_logits=student_logits, teacher_logits=teacher_logits,
        magnitude=magnitude, mask=mask, direction=direction,
    ))


def reference_kl_terms(*, logp, ref_logp, mask):
    """Summable terms of `reference_kl`."""
    checks.require_rank("logp", logp, 2, "B, T")
    checks.require_float("ref_logp", ref_logp)
    checks.require_mask("mask", mask)
    checks.require_same_shape(logp=logp, ref_logp=ref_logp, mask=mask)
    m_BxT = shard(checks.as_mask(mask), ("batch", "seq"))
    # where() first: padding may hold -inf log-probs; the clamp is the release's (TRL's)
    x = jnp.where(m_BxT > 0, jax.lax.stop_gradient(ref_logp).astype(jnp.float32) - logp.astype(jnp.float32), 0.0)
    x = jnp.clip(x, -10.0, 10.0)
    kl_BxT = jnp.exp(x) - x - 1.0
    len_B = jnp.sum(m_BxT, axis=1)
    seq_B = (len_B > 0).astype(jnp.float32)
    return {"ref_kl/kl_sum": jnp.sum(jnp.sum(kl_BxT * m_BxT, axis=1) / jnp.maximum(len_B, 1.0)),
            "ref_kl/seq_count": jnp.sum(seq_B),
            "ref_kl/kl_max": jnp.max(jnp.where(m_BxT > 0, kl_BxT, 0.0))}


def reference_kl_from_terms(terms, *, denominators=None):
    den = pick_denominator(terms, denominators, "ref_kl/seq_count")
    kl = safe_ratio(terms["ref_kl/kl_sum"], den)
    return kl, {"ref_kl/kl": kl, "ref_kl/kl_max": terms["ref_kl/kl_max"]}


def reference_kl(*, logp, ref_logp, mask):
    """KL of the policy to a frozen reference, the k3 estimator per token as TRL and the
    VisionCoach / Open-o3 Video trainers compute it (SPEC section 5):

        x_t = clamp(log pi_ref(y_t) - log pi(y_t), -10, 10),  k3_t = exp(x_t) - x_t - 1 >= 0

    token mean within a sequence, mean over sequences (the GSPO term's aggregation).
    Unbiased for KL(pi || pi_ref) on tokens sampled from pi; the reference is detached.

    Args:
      logp: [B, T] log-probs of the rollout tokens under the policy being trained.
      ref_logp: [B, T] the same tokens under the reference policy.
      mask: [B, T] response-token mask.
    Returns:
      (kl, metrics).
    """
    return reference_kl_from_terms(reference_kl_terms(logp=logp, ref_logp=ref_logp, mask=mask))
