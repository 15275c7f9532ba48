"""STGR record checks (SPEC section 1): schema first, then against the decoded video.

Nothing in an annotation is trusted: boxes outside the frame, negative or out-of-range
times and key frames past the end of the video are reported as `RecordError` with the
record id and what is wrong, never clipped or dropped silently.
"""
from __future__ import annotations

import math
import re

from visd_jax.text.system import TASKS

_TEMPORAL_TASKS = ("temporal QA", "temporal QA (MCQ)")
_SPAN = re.compile(r"\[\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\]\s*$")
# A key frame's time may exceed the last frame's presentation time by one frame interval.
_TIME_SLACK = 1e-3


class RecordError(ValueError):
    """A record that cannot be used; `record_id` and `reason` are kept for reporting."""

    def __init__(self, record_id: str, reason: str):
        super().__init__(f"record {record_id}: {reason}")
        self.record_id = record_id
        self.reason = reason


class NoUsableRecords(RuntimeError):
    """The data cannot feed a run: a whole pass without one usable record, or too large a
    share of bad ones. The message holds the top reasons and example record ids."""


def record_id(rec, index: int | None = None) -> str:
    if isinstance(rec, dict) and isinstance(rec.get("id"), (str, int)):
        return str(rec["id"])
    return f"#{index}" if index is not None else "<no id>"


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def temporal_span(rec: dict) -> tuple[float, float] | None:
    """(start, end) of a temporal answer (`"[s, e]"` or `"X\\n[s, e]"`), else None."""
    if rec.get("task") not in _TEMPORAL_TASKS:
        return None
    m = _SPAN.search(str(rec.get("answer", "")))
    if not m:
        raise RecordError(record_id(rec), f"temporal answer {rec.get('answer')!r} has no "
                                          f"'[start, end]'")
    try:
        return float(m.group(1)), float(m.group(2))
    except ValueError as e:
        raise RecordError(record_id(rec), f"temporal answer {rec.get('answer')!r}: {e}")


def check_schema(rec, index: int | None = None) -> None:
    """Checks the fields that do not need the video; raises RecordError."""
    rid = record_id(rec, index)
    if not isinstance(rec, dict):
        raise RecordError(rid, f"not a JSON object but {type(rec).__name__}")
    if rec.get("task") not in TASKS:
        raise RecordError(rid, f"task {rec.get('task')!r} is not one of {TASKS}")
    for key in ("question", "answer"):
        if not isinstance(rec.get(key), str):
            raise RecordError(rid, f"'{key}' must be a string, got {rec.get(key)!r}")
    media = "image" if rec["task"] == "visual QA" else "video"
    if not isinstance(rec.get(media), str) or not rec[media]:
        raise RecordError(rid, f"task {rec['task']!r} needs a '{media}' path")
    if "duration" in rec and rec["duration"] is not None:
        if not _num(rec["duration"]) or rec["duration"] <= 0:
            raise RecordError(rid, f"duration {rec['duration']!r} is not a positive number")
    kfs = rec.get("key_frames", [])
    if not isinstance(kfs, list):
        raise RecordError(rid, f"key_frames must be a list, got {type(kfs).__name__}")
    for kf in kfs:
        if not (isinstance(kf, dict) and isinstance(kf.get("idx"), int) and _num(kf.get("time"))):
            raise RecordError(rid, f"key frame {kf!r} needs an int 'idx' and a number 'time'")
        if kf["idx"] < 0 or kf["time"] < 0:
            raise RecordError(rid, f"key frame {kf!r} has a negative index or time")
    items = rec.get("key_items", {})
    if not isinstance(items, dict):
        raise RecordError(rid, f"key_items must be an object, got {type(items).__name__}")
    for frame, objs in items.items():
        if not (isinstance(frame, str) and frame.lstrip("-").isdigit()):
            raise RecordError(rid, f"key_items key {frame!r} is not a frame index")
        if int(frame) < 0:
            raise RecordError(rid, f"key_items frame {frame} is negative")
        if not isinstance(objs, dict):
            raise RecordError(rid, f"key_items[{frame}] must map object names to boxes")
        for name, boxes in objs.items():
            if not isinstance(boxes, list) or not boxes:
                raise RecordError(rid, f"key_items[{frame}][{name!r}] must be a list of boxes")
            for b in boxes:
                if not (isinstance(b, list) and len(b) == 4 and all(_num(v) for v in b)):
                    raise RecordError(rid, f"box {b!r} of {name!r} at frame {frame} is not "
                                           f"[x1, y1, x2, y2]")
                x1, y1, x2, y2 = b
                if min(b) < 0 or max(b) > 1:
                    raise RecordError(rid, f"box {b} of {name!r} at frame {frame} lies outside "
                                           f"the frame (normalised coordinates must be in "
                                           f"[0, 1])")
                if not (x1 < x2 and y1 < y2):
                    raise RecordError(rid, f"box {b} of {name!r} at frame {frame} is empty "
                                           f"(needs x1 < x2 and y1 < y2)")
    span = temporal_span(rec)
    if span is not None:
        s, e = span
        if s < 0 or e < s:
            raise RecordError(rid, f"temporal answer [{s}, {e}] needs 0 <= start <= end")


def check_against_video(rec: dict, *, duration: float, num_frames: int,
                        frame_interval: float) -> None:
    """Checks times and frame indices against the decoded video; raises RecordError."""
    rid = record_id(rec)
    limit = duration + frame_interval + _TIME_SLACK
    given = rec.get("duration")
    if _num(given) and abs(given - duration) > max(1.0, 0.1 * duration):
        raise RecordError(rid, f"duration {given}s disagrees with the video's {duration:.3f}s")
    for kf in rec.get("key_frames", []):
        if kf["idx"] >= num_frames:
            raise RecordError(rid, f"key frame idx {kf['idx']} is past the end of the video "
                                   f"({num_frames} frames)")
        if kf["time"] > limit:
            raise RecordError(rid, f"key frame time {kf['time']}s is past the end of the "
                                   f"video ({duration:.3f}s)")
    for frame in rec.get("key_items", {}):
        if int(frame) >= num_frames:
            raise RecordError(rid, f"key_items frame {frame} is past the end of the video "
                                   f"({num_frames} frames)")
    span = temporal_span(rec)
    if span is not None and span[1] > limit:
        raise RecordError(rid, f"temporal answer end {span[1]}s is past the end of the video "
                               f"({duration:.3f}s)")
