"""Grounded reasoning traces from an STGR record's ground truth: the SFT cold-start targets.

The papers start RL from a model that already writes the SPEC section 2 grammar; on data
with annotations (the synthetic set, STGR) the ground truth is enough to write such a
trace: every key object grounded as `<obj>NAME</obj><box>[x1,y1,x2,y2]</box>at<t>T</t>s`
in model-input pixels, temporal spans as `<t>` pairs, and the answer in its task's format.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_SPAN = re.compile(r"\[\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\]")


def _span(answer: str, rid: str) -> tuple[float, float]:
    m = _SPAN.search(answer)
    if not m:
        raise ValueError(f"record {rid}: temporal answer {answer!r} has no [start, end] span")
    return float(m.group(1)), float(m.group(2))


def _claims(rec: Mapping[str, Any], max_claims: int | None) -> list[str]:
    # claims are in the pixels of the frames the model sees
    w, h = rec.get("image_size_refine") or rec["image_size"]
    times = {int(k["idx"]): float(k["time"]) for k in rec.get("key_frames", [])}
    out = []
    for frame in sorted(rec.get("key_items", {}), key=lambda f: times.get(int(f), float(f))):
        t = times.get(int(frame))
        if t is None:
            continue  # a box without a time cannot be grounded in this grammar
        for name, boxes in rec["key_items"][frame].items():
            pix = "".join(
                "<box>[{},{},{},{}]</box>".format(*(int(round(v * s)) for v, s in zip(b, (w, h, w, h))))
                for b in boxes)
            out.append(f"<obj>{name}</obj>{pix}at<t>{_t(t)}</t>s")
    if max_claims is not None and len(out) > max_claims:
        # evenly spread over the clip, first and last kept: the evidence that spans the event
        keep = sorted({round(i * (len(out) - 1) / max(1, max_claims - 1)) for i in range(max_claims)})
        out = [out[i] for i in keep]
    return out


def _t(v: float) -> str:
    """Seconds to the millisecond, trailing zeros dropped: rounding to the release's one
    decimal can move a span's end outside the span and cost the segment reward."""
    return f"{v:.3f}".rstrip("0").rstrip(".") or "0"


def _fmt_span(s: float, e: float) -> str:
    return f"From <t>{_t(s)}</t>s to <t>{_t(e)}</t>s"


def trace(rec: Mapping[str, Any], *, max_claims: int | None = None) -> str:
    """`<think>...</think><answer>...</answer>` for `rec` (an STGR record whose
    `image_size_refine`, or else `image_size`, is the size of the frames the model sees).

    `max_claims` caps the grounded claims (evenly spread over time) so a small model's
    traces fit a short completion budget."""
    task, answer = rec["task"], str(rec["answer"])
    rid = str(rec.get("id", "?"))
    claims = _claims(rec, max_claims)
    seen = ("I find " + ", then ".join(claims) + ". ") if claims else ""
    if task == "temporal QA":
        s, e = _span(answer, rid)
        think = f"{seen}The event starts at <t>{_t(s)}</t>s and ends at <t>{_t(e)}</t>s."
        ans = _fmt_span(s, e)
    elif task == "temporal QA (MCQ)":
        letter = answer.strip().split("\n", 1)[0].strip()
        s, e = _span(answer, rid)
        think = f"{seen}The event starts at <t>{_t(s)}</t>s and ends at <t>{_t(e)}</t>s."
        ans = f"{_fmt_span(s, e)}.\nCorrect Option: {letter}"
    elif task == "visual QA":
        think = f"{seen}These are the objects asked about."
        ans = claims[0].split("at<t>")[0] if claims else answer
    else:
        think = f"{seen}This is the evidence for the answer."
        ans = answer
    return f"<think>{think}</think><answer>{ans}</answer>"
