"""Thinking (grounding) rewards: `thk_temporal_point`, `thk_temporal_segment`, `thk_spatial`.

Reference: VisionCoach release `reward_func.py` with its run script's settings
(`spatial_iou_mode=avg`, `identity_match_mode=soft`, `spatial_norm_mode=matched`,
`correct_tempgate=true`); Open-o3 Video's version is `RewardConfig.open_o3()`.

- thk_temporal_point (temporal-spatial free-form QA only): mean over the `<t>v</t>s`
  values in `<think>` of exp(-d^2 / (2 sigma^2)), d = distance to the nearest gold key-frame
  time; sigma = 4 (1 - p) while training progress p < 3/4, else 1. No times: 0.
- thk_temporal_segment (temporal QA, temporal MCQ): share of those values inside the gold
  span (inclusive).
- thk_spatial, object-aware. Free-form ST QA: for each claim, the key frame whose time is
  nearest the claim's with |dt| <= 1 s (first in record order on ties; none: the claim is
  skipped); for each gold object of that frame whose name matches the claim's (soft:
  equal, substring either way, or a shared whitespace-separated word, case-insensitive),
  the mean over its gold boxes of the max IoU with the claim's boxes; the claim scores the
  mean (`avg`) or max over matched objects; reward = sum / max(1, matched claims).
  Visual QA: max IoU of the think boxes with the gold box. Other tasks: 0. Needs both
  `<think>` and `<answer>` blocks.

Where the paper and release differ (SPEC: code is the default, the other an option):
- The paper describes object identity + multi-box IoU; the release also normalises by
  *matched* claims, so an unmatched claim costs nothing (option: `spatial_norm_mode='all'`).
- Open-o3 Video gates time one-sidedly (`gt - t < 1`, so any claim after the key frame
  passes) and ignores names (`RewardConfig.open_o3()`).
- The soft match treats an empty claim name as a substring of every gold name, as the
  release does.

Deviations from the release, only on inputs it crashes on or turns into NaN: a key frame
missing from `key_items` scores as a frame without objects (the release raises KeyError);
a record without key frames gives thk_temporal_point 0 (the release raises ValueError);
non-finite IoUs count 0 (the release can return NaN).
"""
from __future__ import annotations

import math

from visd_jax.rewards import geometry
from visd_jax.rewards.answer import _inputs
from visd_jax.rewards.config import DEFAULT, RewardConfig
from visd_jax.rewards.parse import Claim


def sigma_at(progress: float, config: RewardConfig = DEFAULT) -> float:
    """sigma(p) = sigma_start (1 - p) for p < switch, else sigma_final (release: 4, 1, 3/4)."""
    if progress < config.sigma_switch:
        return config.sigma_start * (1.0 - progress)
    return config.sigma_final


def check_progress(progress: float) -> float:
    if isinstance(progress, bool) or not isinstance(progress, (int, float)) \
            or not math.isfinite(progress) or not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress: expected training progress in [0, 1], got {progress!r}")
    return float(progress)


def name_match(pred: str, gold: str, mode: str = "soft") -> bool:
    """Release `name_match`: case-insensitive equal; soft adds substring and shared word."""
    if mode == "none":
        return True
    p, g = pred.lower().strip(), gold.lower().strip()
    if p == g:
        return True
    if mode == "strict":
        return False
    return p in g or g in p or bool(set(p.split()) & set(g.split()))


def thk_temporal_point(completion, example, progress: float, *,
                       config: RewardConfig = DEFAULT) -> float:
    progress = check_progress(progress)
    c, g = _inputs(completion, example)
    if c.think is None or g.task != "temporal-spatial free-form QA":
        return 0.0
    if not c.think_times or not g.key_frames:
        return 0.0
    sigma = sigma_at(progress, config)
    gold_times = [t for _, t in g.key_frames]
    total = 0.0
    for t in c.think_times:
        d = min(abs(t - gt) for gt in gold_times)
        total += math.exp(-(d * d) / (2.0 * sigma * sigma)) if math.isfinite(d) else 0.0
    return total / len(c.think_times)


def thk_temporal_segment(completion, example, progress: float = 0.0, *,
                         config: RewardConfig = DEFAULT) -> float:
    del progress, config
    c, g = _inputs(completion, example)
    if c.think is None or g.span is None or not c.think_times:
        return 0.0
    start, end = g.span
    return sum(start <= t <= end for t in c.think_times) / len(c.think_times)


def _nearest_key_frame(time: float, key_frames, config: RewardConfig):
    best, best_dt = None, math.inf
    for idx, kt in key_frames:
        dt = abs(kt - time)
        inside = dt <= config.time_gate_s if config.symmetric_time_gate \
            else kt - time < config.time_gate_s
        if inside and dt < best_dt:
            best, best_dt = (idx, kt), dt
    return best


def claim_score(claim: Claim, gold, config: RewardConfig = DEFAULT) -> float | None:
    """Score of one claim, or None when it is skipped or matches no gold object."""
    hit = _nearest_key_frame(claim.time, gold.key_frames, config)
    if hit is None:
        return None
    # The release looks the frame up by its time; the first key frame with that time wins.
    idx = next(i for i, t in gold.key_frames if t == hit[1])
    objects = gold.key_items.get(str(idx), {})
    object_ious = []
    for name, gt_boxes in objects.items():
        if not name_match(claim.name, name, config.identity_match_mode) or not gt_boxes:
            continue
        per_gt = [max(geometry.box_iou(gt, b) for b in claim.boxes) for gt in gt_boxes]
        object_ious.append(sum(per_gt) / len(per_gt))
    if not object_ious:
        return None
    if config.spatial_iou_mode == "avg":
        return sum(object_ious) / len(object_ious)
    return max(object_ious)


def thk_spatial(completion, example, progress: float = 0.0, *,
                config: RewardConfig = DEFAULT) -> float:
    del progress
    c, g = _inputs(completion, example)
    if c.think is None or not c.has_answer:
        return 0.0
    if g.task == "visual QA":
        if not c.think_boxes:
            return 0.0
        return max(0.0, *(geometry.box_iou(g.vqa_box, b) for b in c.think_boxes))
    if g.task != "temporal-spatial free-form QA" or not c.claims:
        return 0.0
    scores = [s for s in (claim_score(cl, g, config) for cl in c.claims) if s is not None]
    denom = max(1, len(scores)) if config.spatial_norm_mode == "matched" else len(c.claims)
    return sum(scores) / denom
