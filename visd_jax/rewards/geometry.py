"""IoU of boxes and intervals, as the reference defines them, guarded against NaN/inf."""
from __future__ import annotations

import math


def box_iou(gt, pred) -> float:
    """IoU of [x1, y1, x2, y2] boxes (reference `calculate_iou(gt, pred)`).

    Areas are not clipped, so a box with x2 < x1 has negative area exactly as in the
    reference; a non-positive union gives 0. A non-finite result (NaN/inf coordinates make
    the reference return NaN) gives 0 here, so every reward stays finite. None (a box that
    was not 4 numbers) gives 0.
    """
    if gt is None or pred is None:
        return 0.0
    ax1, ay1, ax2, ay2 = gt
    bx1, by1, bx2, by2 = pred
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    if not union > 0:  # also catches NaN
        return 0.0
    iou = inter / union
    return iou if math.isfinite(iou) else 0.0


def interval_iou(gt, pred) -> float:
    """1-D IoU of [start, end] spans: intersection / (max end - min start); 0 if that is <= 0."""
    (g0, g1), (p0, p1) = gt, pred
    inter = max(0.0, min(g1, p1) - max(g0, p0))
    union = max(g1, p1) - min(g0, p0)
    if not union > 0 or not math.isfinite(union) or not math.isfinite(inter):
        return 0.0
    return inter / union
