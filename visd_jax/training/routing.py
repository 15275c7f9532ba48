"""VisionCoach hard-sample routing, self-distillation candidates and the minibatch plan
(SPEC section 5).

Host-side NumPy: it runs between rollouts and the update, on [N, G] reward arrays.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

ANSWER_REWARDS = ("ans_acc", "ans_tiou", "ans_viou")
# ans_acc: the release (its script's `ans_and_grounding` has no branch and falls to this);
# answer_sum: the three answer rewards; total: the paper's R'^g > Rbar
CANDIDATE_RULES = ("ans_acc", "answer_sum", "total")
# prompt: alpha / prompts per hard prompt, its S rows averaged (the release: one prompt per
# device, NLL mean over its positives, gradients averaged over devices); row: alpha times
# the mean over the minibatch's S rows (the paper's 1/|S|)
SD_WEIGHTINGS = ("prompt", "row")


def hard_mask(total_NxG: np.ndarray, *, threshold: float) -> np.ndarray:
    """Hard prompts: mean raw-rollout total reward below `threshold` (release k = 2.21 on the
    summed 7-reward scale)."""
    total_NxG = np.asarray(total_NxG, np.float64)
    if total_NxG.ndim != 2:
        raise ValueError(f"total rewards must be [N, G], got shape {total_NxG.shape}")
    return total_NxG.mean(axis=1) < threshold


def _answer(scores: Mapping[str, np.ndarray]) -> np.ndarray:
    return sum(np.asarray(scores[k], np.float64) for k in ANSWER_REWARDS)


def select_for_distillation(*, raw_G: Mapping[str, np.ndarray], prompted_G: Mapping[str, np.ndarray],
                            top_n: int = 2, rule: str = "ans_acc") -> np.ndarray:
    """Boolean [G'] mask of prompted rollouts kept for the NLL loss.

    `raw_G`, `prompted_G`: reward name -> [G] of one prompt's raw and prompted rollouts.
    Candidates C beat the raw group's mean: `ans_acc` (release) ans_acc' > mean ans_acc;
    `answer_sum` the sum of the three answer rewards; `total` the total reward. S = the
    top-`top_n` of C by the rule's answer score (ans_acc for `ans_acc`, the answer sum
    otherwise: the paper ranks by answering rewards); ties go to the lower rollout index so
    the choice is deterministic. Empty C gives an all-False mask (L_SD = 0).
    """
    if rule not in CANDIDATE_RULES:
        raise ValueError(f"candidate rule must be one of {CANDIDATE_RULES}, got {rule!r}")
    if top_n < 0:
        raise ValueError(f"top_n must be >= 0, got {top_n}")
    if rule == "ans_acc":
        rank = np.asarray(prompted_G["ans_acc"], np.float64)
        cand = rank > np.mean(np.asarray(raw_G["ans_acc"], np.float64))
    else:
        rank = _answer(prompted_G)
        if rule == "answer_sum":
            cand = rank > np.mean(_answer(raw_G))
        else:
            cand = np.asarray(prompted_G["total"], np.float64) > np.mean(np.asarray(raw_G["total"], np.float64))
    order = sorted(np.flatnonzero(cand), key=lambda g: (-rank[g], g))[:top_n]
    keep = np.zeros(rank.shape, bool)
    keep[order] = True
    return keep


class Minibatch(NamedTuple):
    rows: np.ndarray  # [R] rollout rows of this update
    sd_rows: np.ndarray | None  # [P] rows of the SD batch; -1 pads (in no loss)
    sd_weight: np.ndarray | None  # [P] float32 weight of each SD row's token-mean NLL (times alpha)


def minibatch_rows(rows: int, minibatches: int, sd_prompt: np.ndarray | None = None, *, group: int = 1,
                   per_prompt: int = 1, weighting: str = "prompt", multiple: int = 1) -> list[Minibatch]:
    """The update plan of one RL step: per minibatch its rollout rows [rows / minibatches],
    and the self-distillation rows of the prompts it holds, with their loss weights.

    `sd_prompt` [S]: the prompt (rollout rows p*group .. p*group+group-1) each SD row was
    distilled for, -1 for padding. A prompt's SD rows go to the minibatch holding its first
    rollout, so its NLL is learnt in the same update as its GSPO term, exactly once. The SD
    part of every minibatch has one static length: the most prompts a minibatch starts times
    `per_prompt` (top-N), rounded up to a `multiple` (the mesh's batch shards: fewer rows
    than shards cannot be split and every chip would hold them all). Weights (the loss is
    alpha * sum_r w_r NLL_r): `prompt` w_r = 1 / (|S_p| * prompts in the minibatch), the
    release's per-prompt mean averaged over the step's prompts like the GSPO term; `row`
    w_r = 1 / (S rows in the minibatch)."""
    if minibatches < 1 or rows % minibatches:
        raise ValueError(f"{rows} rollouts do not split into {minibatches} equal minibatches")
    if group < 1 or rows % group:
        raise ValueError(f"{rows} rollouts are not whole groups of {group}")
    if weighting not in SD_WEIGHTINGS:
        raise ValueError(f"SD weighting must be one of {SD_WEIGHTINGS}, got {weighting!r}")
    mb = rows // minibatches
    plan = [Minibatch(np.arange(m * mb, (m + 1) * mb, dtype=np.int32), None, None) for m in range(minibatches)]
    if sd_prompt is None:
        return plan
    sd_prompt = np.asarray(sd_prompt, np.int64)
    prompts = rows // group
    if (sd_prompt >= prompts).any():
        raise ValueError(f"SD rows name prompts {sorted(set(sd_prompt[sd_prompt >= prompts].tolist()))}, "
                         f"but the step has {prompts}")
    home = np.arange(prompts) * group // mb  # the minibatch of each prompt's first rollout
    kept = np.flatnonzero(sd_prompt >= 0)
    if np.bincount(sd_prompt[kept], minlength=prompts).max(initial=0) > per_prompt:
        raise ValueError(f"a prompt has more than per_prompt={per_prompt} SD rows")
    per = int(np.bincount(home, minlength=minibatches).max()) * per_prompt
    per = -(-per // multiple) * multiple
    n_of = np.bincount(sd_prompt[kept], minlength=prompts)
    out = []
    for m, mbatch in enumerate(plan):
        mine = kept[home[sd_prompt[kept]] == m]
        idx = np.full((per,), -1, np.int32)
        w = np.zeros((per,), np.float32)
        idx[: len(mine)] = mine
        if len(mine):
            w[: len(mine)] = (group / (mb * n_of[sd_prompt[mine]]) if weighting == "prompt"
                              else 1.0 / len(mine))
        out.append(mbatch._replace(sd_rows=idx, sd_weight=w))
    return out
