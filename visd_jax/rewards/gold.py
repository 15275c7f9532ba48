"""`Gold`: the annotations of one STGR record (SPEC section 1), validated once per group.

Unlike rollout text, the record is trusted data: a malformed field raises ValueError naming
the field (the reference trainers instead swallow the exception inside each reward and
score 0, which hides broken records).

Box conventions (as the reference): `key_items` boxes are normalised to 0..1 and scaled by
`image_size` = [width, height] of the frames the model sees, giving model-input pixels
(`convert_coord_format`). A visual-QA gold box (inside `answer`, `<box>[x1,y1,x2,y2]</box>`)
is in pixels of the original image of size `image_size`; when the record also carries
`image_size_refine` (the size the model sees), it is rescaled by refine / size
(`convert_coord_format_gqa`); without it no rescaling is done.
"""
from __future__ import annotations

import ast
import dataclasses
import math

from visd_jax.rewards import _scan
from visd_jax.rewards.parse import Box

from visd_jax.text.system import TASKS  # the one list of STGR task names

FREE_FORM_TASKS = ("temporal-spatial free-form QA", "General video QA Free-form")
TEMPORAL_TASKS = ("temporal QA", "temporal QA (MCQ)")


@dataclasses.dataclass(frozen=True)
class Gold:
    task: str
    answer: str                                   # stripped gold answer text
    letter: str | None                            # MCQ letter (both MCQ tasks)
    span: tuple[float, float] | None              # temporal tasks
    key_frames: tuple[tuple[int, float], ...]     # (frame idx, time s), record order
    key_items: dict                               # str(idx) -> {name: (pixel Box, ...)}
    vqa_box: Box | None                           # visual QA, model-input pixels


def _num(x, what: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"{what}: expected a finite number, got {x!r}")
    return float(x)


def _size(example: dict, key: str) -> tuple[float, float]:
    size = example.get(key)
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"example[{key!r}]: expected [width, height], got {size!r}")
    w, h = (_num(v, f"example[{key!r}]") for v in size)
    if w <= 0 or h <= 0:
        raise ValueError(f"example[{key!r}]: width and height must be > 0, got {size!r}")
    return w, h


def _span(text: str, what: str) -> tuple[float, float]:
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise ValueError(f"{what}: expected '[start, end]' in seconds, got {text!r}") from e
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{what}: expected '[start, end]' in seconds, got {text!r}")
    start, end = (_num(v, what) for v in value)
    if end < start:
        raise ValueError(f"{what}: end {end} < start {start}")
    return start, end


def _box(value, what: str) -> Box:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise ValueError(f"{what}: expected [x1, y1, x2, y2], got {value!r}")
    return tuple(_num(v, what) for v in value)


def gold_from_example(example: dict) -> Gold:
    """Validate an STGR record and return its annotations in the rewards' coordinates."""
    if isinstance(example, Gold):
        return example
    if not isinstance(example, dict):
        raise ValueError(f"example: expected an STGR dict, got {type(example).__name__}")
    task = example.get("task")
    if task not in TASKS:
        raise ValueError(f"example['task']: expected one of {TASKS}, got {task!r}")
    answer = example.get("answer")
    if not isinstance(answer, str):
        raise ValueError(f"example['answer']: expected str, got {type(answer).__name__}")

    letter = span = vqa_box = None
    if task == "General video QA MCQ":
        letter = answer.strip()
    elif task == "temporal QA (MCQ)":
        lines = answer.split("\n")
        if len(lines) < 2:
            raise ValueError(f"example['answer']: temporal MCQ needs '<letter>\\n[start, end]', "
                             f"got {answer!r}")
        letter = lines[0].strip()
        span = _span(lines[1], "example['answer'] (second line)")
    elif task == "temporal QA":
        span = _span(answer, "example['answer']")
    elif task == "visual QA":
        found = _scan.tagged_box_strings(answer, first_only=True)
        if not found:
            raise ValueError(f"example['answer']: visual QA needs '<box>[x1,y1,x2,y2]</box>', "
                             f"got {answer!r}")
        x1, y1, x2, y2 = _box(_scan.decode_json(found[0]), "example['answer'] box")
        sx = sy = 1.0
        if "image_size_refine" in example:
            w, h = _size(example, "image_size")
            rw, rh = _size(example, "image_size_refine")
            sx, sy = rw / w, rh / h
        vqa_box = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)

    frames = example.get("key_frames") or []
    if not isinstance(frames, list):
        raise ValueError(f"example['key_frames']: expected a list, got {type(frames).__name__}")
    key_frames = []
    for i, kf in enumerate(frames):
        if not isinstance(kf, dict) or "idx" not in kf or "time" not in kf:
            raise ValueError(f"example['key_frames'][{i}]: expected {{'idx', 'time'}}, got {kf!r}")
        key_frames.append((int(_num(kf["idx"], f"key_frames[{i}].idx")),
                           _num(kf["time"], f"key_frames[{i}].time")))

    items = example.get("key_items") or {}
    if not isinstance(items, dict):
        raise ValueError(f"example['key_items']: expected a dict, got {type(items).__name__}")
    key_items = {}
    if items and task == "temporal-spatial free-form QA":
        w, h = _size(example, "image_size")
        for frame, objects in items.items():
            if objects is None:  # the reference trainer drops None entries
                continue
            if not isinstance(objects, dict):
                raise ValueError(f"example['key_items'][{frame!r}]: expected a dict")
            scaled = {}
            for name, boxes in objects.items():
                if boxes is None:
                    continue
                if not isinstance(boxes, list):
                    raise ValueError(f"example['key_items'][{frame!r}][{name!r}]: expected a "
                                     f"list of boxes")
                what = f"example['key_items'][{frame!r}][{name!r}]"
                scaled[str(name)] = tuple(
                    (b[0] * w, b[1] * h, b[2] * w, b[3] * h)
                    for b in (_box(v, what) for v in boxes))
            key_items[str(frame)] = scaled
    return Gold(task=task, answer=answer.strip(), letter=letter, span=span,
                key_frames=tuple(key_frames), key_items=key_items, vqa_box=vqa_box)
