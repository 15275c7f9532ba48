"""VisionCoach hard-sample routing and self-distillation candidate selection (SPEC section 5).

Host-side NumPy: it runs between rollouts and the update, on [N, G] reward arrays.
"""
from __future__ import annotations

import numpy as np

CANDIDATE_RULES = ("answer", "total")


def hard_mask(total_NxG: np.ndarray, *, threshold: float) -> np.ndarray:
    """Hard prompts: mean raw-rollout total reward below `threshold` (release k = 2.21 on the
    summed 7-reward scale)."""
    total_NxG = np.asarray(total_NxG, np.float64)
    if total_NxG.ndim != 2:
        raise ValueError(f"total rewards must be [N, G], got shape {total_NxG.shape}")
    return total_NxG.mean(axis=1) < threshold


def select_for_distillation(
    *,
    raw_total_G: np.ndarray,
    raw_answer_G: np.ndarray,
    prompted_total_G: np.ndarray,
    prompted_answer_G: np.ndarray,
    top_n: int = 2,
    rule: str = "answer",
) -> np.ndarray:
    """Boolean [G'] mask of prompted rollouts kept for the NLL loss.

    Candidates C are prompted rollouts that beat the raw group's mean: by answer reward
    (`rule="answer"`, the released code) or by total reward (`rule="total"`, the paper's
    R'^g > Rbar). S = the top-`top_n` of C by answer reward; ties broken by rollout index
    so the choice is deterministic. Empty C gives an all-False mask (L_SD = 0).
    """
    if rule not in CANDIDATE_RULES:
        raise ValueError(f"candidate rule must be one of {CANDIDATE_RULES}, got {rule!r}")
    if top_n < 0:
        raise ValueError(f"top_n must be >= 0, got {top_n}")
    p_ans = np.asarray(prompted_answer_G, np.float64)
    if rule == "answer":
        cand = p_ans > np.mean(np.asarray(raw_answer_G, np.float64))
    else:
        cand = np.asarray(prompted_total_G, np.float64) > np.mean(np.asarray(raw_total_G, np.float64))
    order = sorted(np.flatnonzero(cand), key=lambda g: (-p_ans[g], g))[:top_n]
    keep = np.zeros(p_ans.shape, bool)
    keep[order] = True
    return keep


def minibatch_rows(rows: int, minibatches: int, sd_selected: np.ndarray | None = None, *, multiple: int = 1):
    """The update plan of one RL step: per minibatch, (rollout rows [rows / minibatches],
    self-distillation rows or None). The SD set goes in the same number of parts of
    ceil(S / minibatches) rows, rounded up to a `multiple` (the mesh's batch shards: fewer
    rows than shards cannot be split and every chip would hold them all), so every kept row
    is learnt from exactly once; its padding (selected 0, or past the end) is -1, which
    enters no loss."""
    if minibatches < 1 or rows % minibatches:
        raise ValueError(f"{rows} rollouts do not split into {minibatches} equal minibatches")
    mb = rows // minibatches
    plan = []
    for m in range(minibatches):
        sd = None
        if sd_selected is not None:
            sel = np.asarray(sd_selected)
            per = -(-len(sel) // minibatches)
            per = -(-per // multiple) * multiple
            j = np.arange(m * per, (m + 1) * per)
            sd = np.where((j < len(sel)) & (sel[np.minimum(j, len(sel) - 1)] > 0), j, -1).astype(np.int32)
        plan.append((np.arange(m * mb, (m + 1) * mb, dtype=np.int32), sd))
    return plan
