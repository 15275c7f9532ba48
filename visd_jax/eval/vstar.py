"""V-STAR metrics (SPEC section 7; Cheng et al. 2025 and the VisionCoach eval script).

Per sample, chain c in {1: what-when-where, 2: what-where-when}:
  tIoU_c = |pred ∩ gold| / (max end - min start) of the answered span (0 if missing);
  vIoU_c = mean over gold-box frames of the max IoU of the predicted boxes for that frame
           (0 for a frame without a prediction, and 0 for a sample without predictions).
Summary: Acc, mean tIoU_c, R@tIoU {0.3, 0.5, 0.7} (share of samples with tIoU >= t), mean
vIoU_c, AP@vIoU {0.1, 0.3, 0.5, 0.7, 0.9} (per sample the share of gold frames with
IoU >= t, then the mean over samples), and `combine`:
  AM_c = (Acc + tIoU_c + vIoU_c) / 3,              mAM = (AM_1 + AM_2) / 2,
  LGM_c = -(ln(1-Acc) + ln(1-tIoU_c) + ln(1-vIoU_c)) / 3,   mLGM = (LGM_1 + LGM_2) / 2,
all x100. A metric of 1 would take ln(0); 1 - m is floored at `eps` (1e-6) instead.

Predictions JSONL (`python -m visd_jax.eval.vstar --predictions FILE.jsonl`), one object
per sample:
  "id":          any (optional, for messages)
  "correct":     bool, the answer judged correct (V-STAR: judge score >= 2); or
  "judge_score": number, correct when >= 2
  "gt_span":     [start, end] seconds
  "pred_span_1", "pred_span_2":   [start, end] or null  (chain 1 / chain 2 answer)
  "gt_boxes":    {frame key: [x1, y1, x2, y2]}          (gold box per annotated frame), or
                 [[frame key, [x1, y1, x2, y2]], ...]   (V-STaR's list: a frame may repeat)
  "pred_boxes_1", "pred_boxes_2": {frame key: [x1,y1,x2,y2] or [[...], ...]} or null
Frame keys are strings (V-STAR uses the frame timestamp); boxes share one pixel frame.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from visd_jax.rewards.geometry import box_iou, interval_iou

TIOU_THRESHOLDS = (0.3, 0.5, 0.7)
VIOU_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)


def _fraction(name: str, x) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0.0 <= x <= 1.0:
        raise ValueError(f"{name}: expected a fraction in [0, 1], got {x!r}")
    return float(x)


def combine(*, acc: float, tiou_chain1: float, tiou_chain2: float, viou_chain1: float,
            viou_chain2: float, eps: float = 1e-6) -> dict[str, float]:
    """AM1, AM2, mAM, LGM1, LGM2, mLGM (x100) from fractions in [0, 1]."""
    a = _fraction("acc", acc)
    t = (_fraction("tiou_chain1", tiou_chain1), _fraction("tiou_chain2", tiou_chain2))
    v = (_fraction("viou_chain1", viou_chain1), _fraction("viou_chain2", viou_chain2))

    def nlog(m: float) -> float:
        return -math.log(max(1.0 - m, eps)) + 0.0  # + 0.0: a zero metric gives 0, not -0

    am = [(a + t[c] + v[c]) / 3 for c in range(2)]
    lgm = [(nlog(a) + nlog(t[c]) + nlog(v[c])) / 3 for c in range(2)]
    return {"AM1": 100 * am[0], "AM2": 100 * am[1], "mAM": 100 * (am[0] + am[1]) / 2,
            "LGM1": 100 * lgm[0], "LGM2": 100 * lgm[1], "mLGM": 100 * (lgm[0] + lgm[1]) / 2}


def _pair(x) -> tuple[float, float] | None:
    if not isinstance(x, (list, tuple)) or len(x) != 2:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in x):
        return None
    return float(x[0]), float(x[1])


def temporal_iou(gt_span, pred_span) -> float:
    """V-STAR tIoU; a missing or malformed prediction scores 0 (a reversed one is scored as
    given, like the reference evaluator: its union is then smaller, its intersection 0)."""
    gt, pred = _pair(gt_span), _pair(pred_span)
    if gt is None:
        raise ValueError(f"gt_span: expected [start, end], got {gt_span!r}")
    return 0.0 if pred is None else interval_iou(gt, pred)


def _boxes(value) -> list:
    if isinstance(value, (list, tuple)) and len(value) == 4 and \
            all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [tuple(float(v) for v in value)]
    if isinstance(value, (list, tuple)):
        return [tuple(float(v) for v in b) for b in value
                if isinstance(b, (list, tuple)) and len(b) == 4
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)]
    return []


def frame_ious(gt_boxes: dict, pred_boxes) -> list[float]:
    """Per gold frame: max IoU of the predicted boxes for that frame key (0 if none).
    `gt_boxes`: {frame: box}, or [[frame, box], ...] where one frame has several gold boxes."""
    if isinstance(gt_boxes, dict):
        gold = list(gt_boxes.items())
    elif isinstance(gt_boxes, list) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in gt_boxes):
        gold = [tuple(p) for p in gt_boxes]
    else:
        raise ValueError(f"gt_boxes: expected {{frame: box}} or [[frame, box], ...], got {gt_boxes!r:.80}")
    pred = pred_boxes if isinstance(pred_boxes, dict) else {}
    out = []
    for frame, gt in gold:
        gt_box = _boxes(gt)
        if len(gt_box) != 1:
            raise ValueError(f"gt_boxes[{frame!r}]: expected one [x1, y1, x2, y2], got {gt!r}")
        cands = _boxes(pred.get(str(frame)))
        out.append(max((box_iou(gt_box[0], b) for b in cands), default=0.0))
    return out


def visual_iou(gt_boxes: dict, pred_boxes) -> float:
    ious = frame_ious(gt_boxes, pred_boxes)
    return float(np.mean(ious)) if ious else 0.0


def evaluate(samples: list[dict], *, unanswered: int = 0) -> dict[str, float]:
    """All V-STAR numbers (fractions, except the `combine` keys which are x100).

    As V-STaR's scorer: a row whose "answer_vqa" is present but empty is wrong and takes no
    part in the tIoU / vIoU means; `unanswered` items (no row: video missing, say) add to
    Acc's denominator only."""
    if not samples:
        raise ValueError("predictions: no samples")
    acc, out = [], {}
    per_chain = {1: {"tiou": [], "viou": [], "ap": []}, 2: {"tiou": [], "viou": [], "ap": []}}
    for i, s in enumerate(samples):
        if "answer_vqa" in s and not s["answer_vqa"]:
            acc.append(False)
            continue
        if "correct" in s:
            acc.append(bool(s["correct"]))
        elif "judge_score" in s:
            v = s["judge_score"]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"predictions[{i}] (id {s.get('id')!r}): judge_score must be a number, got {v!r}")
            acc.append(float(v) >= 2)
        else:
            raise ValueError(f"predictions[{i}] (id {s.get('id')!r}): needs 'correct' or "
                             f"'judge_score'")
        for c in (1, 2):
            per_chain[c]["tiou"].append(temporal_iou(s.get("gt_span"), s.get(f"pred_span_{c}")))
            ious = frame_ious(s.get("gt_boxes", {}), s.get(f"pred_boxes_{c}"))
            per_chain[c]["viou"].append(float(np.mean(ious)) if ious else 0.0)
            per_chain[c]["ap"].append([float(np.mean([x >= t for x in ious])) if ious else 0.0
                                       for t in VIOU_THRESHOLDS])
    out["Acc"] = float(np.sum(acc) / (len(acc) + unanswered))

    def mean(x) -> float:
        return float(np.mean(x)) if len(x) else 0.0

    for c in (1, 2):
        tious = np.asarray(per_chain[c]["tiou"])
        out[f"tIoU{c}"] = mean(tious)
        for t in TIOU_THRESHOLDS:
            out[f"R{c}@tIoU{t}"] = mean(tious >= t)
        out[f"vIoU{c}"] = mean(per_chain[c]["viou"])
        aps = np.asarray(per_chain[c]["ap"]).reshape(-1, len(VIOU_THRESHOLDS))
        for k, t in enumerate(VIOU_THRESHOLDS):
            out[f"AP{c}@vIoU{t}"] = mean(aps[:, k])
    out.update(combine(acc=out["Acc"], tiou_chain1=out["tIoU1"], tiou_chain2=out["tIoU2"],
                       viou_chain1=out["vIoU1"], viou_chain2=out["vIoU2"]))
    return out


def table(metrics: dict[str, float]) -> str:
    rows = ["| metric | value |", "|---|---:|"]
    for k, v in metrics.items():
        scale = 1.0 if k in ("AM1", "AM2", "mAM", "LGM1", "LGM2", "mLGM") else 100.0
        rows.append(f"| {k} | {v * scale:.1f} |")
    return "\n".join(rows)


def read_jsonl(path: str) -> list[dict]:
    samples = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    samples.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from e
    return samples


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="V-STAR metrics from a predictions JSONL")
    parser.add_argument("--predictions", required=True, help="predictions JSONL file")
    args = parser.parse_args(argv)
    print(table(evaluate(read_jsonl(args.predictions))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
