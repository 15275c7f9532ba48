"""`parse(text) -> Completion`: everything the rewards and the judge read from a rollout.

Output grammar (SPEC section 2): `<think>...</think><answer>...</answer>`; inside `<think>`
each grounded mention is a *claim* `<obj>NAME</obj><box>[x1,y1,x2,y2]</box>(<box>..</box>)*`
`at<t>SECONDS</t>s`; temporal answers read `From <t>S</t>s to <t>E</t>s`, temporal MCQ adds
`Correct Option: X`.

Every field is defined as the reference reward code (VisionCoach release,
`reward_func.py`) reads it, so that rewards computed from a `Completion` equal the
reference's on any string, including malformed ones:

- think: text between the first `<think>` and the first `</think>` after it (None if absent).
- answer: same for `<answer>`, whitespace-stripped; "" when absent (`has_answer` False).
- claims: the reference's lazy DOTALL claim regex, in order. A claim whose time is not a
  float or whose boxes are not all JSON is dropped (as the reference does), yet the text it
  spans is consumed. Its name can therefore contain tags when a lazy group stretches over a
  malformed mention: the reference does the same and its soft name match then compares the
  stretched name.
- think_times: `<t>([\\d.]+)</t>s` in think. If any one value fails `float()` (for example
  `<t>1.2.3</t>s`) the reference's list comprehension raises and it uses *no* times; we keep
  that all-or-nothing rule and record it in `think_times_valid`.
- answer_span: first `<t>(\\d+\\.?\\d*)</t>s to <t>(\\d+\\.?\\d*)</t>s` in the answer (may have
  end < start; the reward decides).
- answer_box: first `<box>([...])</box>` (one line) in the answer, JSON-decoded.
- chosen_option: `answer.split("Correct Option:")[1].strip()`, None without the marker.

`parse` never raises and runs in O(n log n): see `_scan.py` for how the regexes are
replaced by scanners that cannot backtrack. Boxes are tuples of 4 floats, or None when the
decoded JSON is not 4 numbers (the reference's `calculate_iou` then scores 0).
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import NamedTuple

import numpy as np

from visd_jax.rewards import _scan

Box = tuple[float, float, float, float]


class Claim(NamedTuple):
    """One grounded mention: object name, one or more boxes (model-input pixels), time (s).

    A NamedTuple rather than a dataclass: a long rollout has a thousand of them."""

    name: str
    boxes: tuple[Box | None, ...]
    time: float


@dataclasses.dataclass(frozen=True)
class TagCounts:
    """Opening/closing tag counts as the reference `format_reward` counts them."""

    think: tuple[int, int]    # over the whole text
    answer: tuple[int, int]   # over the whole text
    obj: tuple[int, int]      # inside the think block
    t: tuple[int, int]        # inside the think block
    box: tuple[int, int]      # inside the think block

    @property
    def balanced(self) -> bool:
        return all(o == c for o, c in (self.think, self.answer, self.obj, self.t, self.box))


@dataclasses.dataclass(frozen=True)
class Completion:
    """A parsed rollout. `claims` and `think_boxes` are computed on first use (only
    thk_spatial and the judge read them), everything else in `parse`."""

    text: str
    think: str | None
    answer: str
    has_answer: bool
    think_times: tuple[float, ...]
    think_times_valid: bool
    answer_span: tuple[float, float] | None
    answer_box: Box | None
    answer_box_found: bool
    chosen_option: str | None
    tags: TagCounts
    word_obj_box: bool  # `<obj>(\w+)</obj><box>[..]</box>` anywhere (visual-QA format rule)

    @functools.cached_property
    def claims(self) -> tuple[Claim, ...]:
        return _claims(self.think, {}) if self.think is not None else ()

    @functools.cached_property
    def think_boxes(self) -> tuple[Box | None, ...]:
        """Every one-line `<box>[...]</box>` in think that is valid JSON, in order."""
        if self.think is None:
            return ()
        memo: dict = {}
        decoded = [decode_box(s, memo) for s in _scan.tagged_box_strings(self.think)]
        return tuple(b for ok, b in decoded if ok)


def as_box(value) -> Box | None:
    """A decoded JSON value as 4 float64 coordinates, the way the reference's
    `np.array(box, dtype=float)` reads it; None when that fails or the length is not 4."""
    if not isinstance(value, list) or len(value) != 4:
        return None
    if all(type(v) is float or type(v) is int for v in value):  # the usual case, fast
        try:
            return tuple(float(v) for v in value)
        except OverflowError:  # an int beyond float range: numpy raises, so do we
            return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        return None
    if arr.shape != (4,):
        return None
    return tuple(float(v) for v in arr)


# A box string that is exactly four JSON numbers. For it `json.loads` + `as_box` equals
# `float()` of each number: JSON floats are read with float(), and JSON integers of at most
# 300 digits convert to float exactly as their text does. Anything else (NaN literals, huge
# integers, strings, nesting) takes the general path.
_JSON_WS = r"[ \t\n\r]*+"
_JSON_NUM = r"(-?+(?:0|[1-9]\d{0,299}+)(?:\.\d++)?+(?:[eE][-+]?+\d++)?+)"
_FAST_BOX_RE = re.compile(r"\[" + ",".join([_JSON_WS + _JSON_NUM + _JSON_WS] * 4) + r"\]")


def decode_box(s: str, memo: dict) -> tuple[bool, Box | None]:
    """(is JSON, box) for one `[...]` string, as `json.loads` then `as_box` read it."""
    hit = memo.get(s)
    if hit is None:
        m = _FAST_BOX_RE.fullmatch(s)
        if m is not None:
            hit = (True, tuple(float(v) for v in m.groups()))
        else:
            d = _scan.decode_json(s)
            hit = (d is not None, as_box(d))
        memo[s] = hit
    return hit


def _float(s: str) -> float | None:
    try:
        return float(s)
    except (ValueError, OverflowError):
        return None


def _claims(think: str, memo: dict) -> tuple[Claim, ...]:
    out = []
    for name, block, time_text in _scan.claim_matches(think):
        time = _float(time_text.strip())
        if time is None:
            continue
        decoded = [decode_box(s, memo) for s in _scan.bracket_strings(block)]
        if not decoded or not all(ok for ok, _ in decoded):
            continue
        out.append(Claim(name=name.strip(), boxes=tuple(b for _, b in decoded), time=time))
    return tuple(out)


def _think_times(think: str) -> tuple[tuple[float, ...], bool]:
    values = [_float(m) for m in _scan.THINK_TIME_RE.findall(think)]
    if any(v is None for v in values):
        return (), False
    return tuple(values), True


def _span(answer: str) -> tuple[float, float] | None:
    m = _scan.ANSWER_SPAN_RE.search(answer)
    if m is None:
        return None
    start, end = _float(m.group(1)), _float(m.group(2))
    if start is None or end is None:
        return None
    return start, end


def parse(text: str) -> Completion:
    """Parse any string into a `Completion`; never raises for a `str` argument."""
    if not isinstance(text, str):
        raise TypeError(f"parse(text): expected str, got {type(text).__name__}")
    think = _scan.first_block(text, "<think>", "</think>")
    answer_raw = _scan.first_block(text, "<answer>", "</answer>")
    answer = answer_raw.strip() if answer_raw is not None else ""
    inner = think if think is not None else ""
    times, times_ok = _think_times(inner)
    ans_box_strs = _scan.tagged_box_strings(answer, first_only=True)
    ans_ok, ans_box = decode_box(ans_box_strs[0], {}) if ans_box_strs else (False, None)
    parts = answer.split("Correct Option:", 2)
    tags = TagCounts(
        think=(text.count("<think>"), text.count("</think>")),
        answer=(text.count("<answer>"), text.count("</answer>")),
        obj=(inner.count("<obj>"), inner.count("</obj>")),
        t=(inner.count("<t>"), inner.count("</t>")),
        box=(inner.count("<box>"), inner.count("</box>")),
    )
    return Completion(
        text=text,
        think=think,
        answer=answer,
        has_answer=answer_raw is not None,
        think_times=times,
        think_times_valid=times_ok,
        answer_span=_span(answer),
        answer_box=ans_box,
        answer_box_found=ans_ok,
        chosen_option=parts[1].strip() if len(parts) > 1 else None,
        tags=tags,
        word_obj_box=_scan.has_word_obj_box(text),
    )
