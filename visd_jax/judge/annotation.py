"""`Judgement` and the deterministic `AnnotationJudge` (VISD's structured judge, SPEC 6).

The VISD release asks an external text-only LLM for the diagnosis. Offline, we derive the
same fields from the record's annotations and the parsed rollout, with fixed rules:

- answer_score: the task's answer reward (letter match, ROUGE, tIoU or vIoU); temporal MCQ
  is the mean of the letter match and the tIoU. verdict: correct if >= 0.8 (MCQ: the exact
  letter), partial if >= 0.3, else wrong.
- temporal_score: thk_temporal_point at the final sigma (free-form ST QA) or
  thk_temporal_segment (temporal tasks); spatial_score: thk_spatial. None where the task has
  no such annotation.
- consistency (reasoning supports the answer): MCQ, the share of think mentions of an
  option letter that name the chosen one; temporal, the share of answered endpoints within
  1 s of a time cited in think; free-form, the share of answer tokens (ROUGE tokenizer,
  stemmed) that occur in think; visual QA, max IoU of the answer box with think boxes.
  No think block: 0.
- error_cause, first rule that applies: incomplete_output (format reward 0 or empty
  answer); none (verdict correct); wrong_time (temporal_score < 0.5); wrong_object
  (spatial_score < 0.3); evidence_too_broad (answered span or box covers the gold one and is
  over twice as large); drifted_answer (grounding fine but consistency < 0.5); else
  wrong_event.
"""
from __future__ import annotations

import dataclasses
import re

from visd_jax.rewards import answer as ans
from visd_jax.rewards import geometry, grounding
from visd_jax.rewards.format import format_reward
from visd_jax.rewards.gold import TEMPORAL_TASKS, Gold, gold_from_example
from visd_jax.rewards.parse import Completion, parse

VERDICTS = ("correct", "partial", "wrong")
ERROR_CAUSES = ("none", "wrong_event", "wrong_time", "wrong_object", "evidence_too_broad",
                "drifted_answer", "incomplete_output")
_OPTION_RE = re.compile(r"\b(?:option|answer|choice)\s*\(?([A-Z])\b", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Judgement:
    verdict: str                  # correct / partial / wrong
    answer_score: float           # [0, 1]
    consistency: float            # [0, 1], reasoning supports the answer
    temporal_score: float | None  # [0, 1]; None when the task has no temporal annotation
    spatial_score: float | None   # [0, 1]; None when the task has no box annotation
    error_cause: str              # one of ERROR_CAUSES
    feedback: str                 # 2-4 sentences of corrective feedback

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"Judgement.verdict: expected one of {VERDICTS}, "
                             f"got {self.verdict!r}")
        if self.error_cause not in ERROR_CAUSES:
            raise ValueError(f"Judgement.error_cause: expected one of {ERROR_CAUSES}, "
                             f"got {self.error_cause!r}")
        for name in ("answer_score", "consistency", "temporal_score", "spatial_score"):
            v = getattr(self, name)
            if v is None and name in ("temporal_score", "spatial_score"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"Judgement.{name}: expected a number in [0, 1], got {v!r}")
        n = count_sentences(self.feedback) if isinstance(self.feedback, str) else 0
        if not 2 <= n <= 4:
            raise ValueError(f"Judgement.feedback: expected 2-4 sentences, got {n}")


def count_sentences(text: str) -> int:
    return len([s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()])


def _fmt(t: float) -> str:
    return f"{t:.1f}s"


def _answer_score(c: Completion, g: Gold) -> float:
    if g.task == "temporal QA (MCQ)":
        return 0.5 * (ans.ans_acc(c, g) + ans.ans_tiou(c, g))
    if g.task == "temporal QA":
        return ans.ans_tiou(c, g)
    if g.task == "visual QA":
        return ans.ans_viou(c, g)
    return ans.ans_acc(c, g)


def _consistency(c: Completion, g: Gold) -> float:
    if c.think is None:
        return 0.0
    if g.task in ("General video QA MCQ", "temporal QA (MCQ)"):
        chosen = (c.answer if g.task == "General video QA MCQ" else c.chosen_option or "")
        chosen = chosen.strip().strip(".()[]").upper()
        cited = [m.upper() for m in _OPTION_RE.findall(c.think)]
        if not cited:
            return 0.5  # the reasoning never names an option: neither support nor conflict
        return sum(x == chosen for x in cited) / len(cited)
    if g.task in TEMPORAL_TASKS:
        if c.answer_span is None:
            return 0.0
        if not c.think_times:
            return 0.0
        return sum(min(abs(e - t) for t in c.think_times) <= 1.0
                   for e in c.answer_span) / 2.0
    if g.task == "visual QA":
        return max((geometry.box_iou(c.answer_box, b) for b in c.think_boxes), default=0.0)
    tokens = ans.rouge_tokens(c.answer[:4096])
    if not tokens:
        return 0.0
    think_tokens = set(ans.rouge_tokens(c.think[:65536]))
    return sum(t in think_tokens for t in tokens) / len(tokens)


def _too_broad(c: Completion, g: Gold) -> bool:
    if g.span is not None and c.answer_span is not None:
        (g0, g1), (p0, p1) = g.span, c.answer_span
        return p0 <= g0 and p1 >= g1 and (p1 - p0) > 2.0 * (g1 - g0)
    if g.vqa_box is not None and c.answer_box is not None:
        (a0, b0, a1, b1), (x0, y0, x1, y1) = g.vqa_box, c.answer_box
        inside = x0 <= a0 and y0 <= b0 and x1 >= a1 and y1 >= b1
        return inside and (x1 - x0) * (y1 - y0) > 2.0 * (a1 - a0) * (b1 - b0)
    return False


def verified_window(g: Gold) -> tuple[float, float] | None:
    """The gold span, or for free-form ST QA the span of the key-frame times."""
    if g.span is not None:
        return g.span
    if g.key_frames:
        times = [t for _, t in g.key_frames]
        return min(times), max(times)
    return None


def _feedback(cause: str, verdict: str, g: Gold) -> str:
    window = verified_window(g)
    where = f" between {_fmt(window[0])} and {_fmt(window[1])}" if window else ""
    first = {"correct": "The final answer is correct.",
             "partial": "The final answer is only partly correct.",
             "wrong": "The final answer is wrong."}[verdict]
    fix = {
        "none": "Keep grounding each claim in the cited frames and objects.",
        "incomplete_output": "The output is incomplete: close every <think>, <answer>, <obj>, "
                             "<box> and <t> tag and give a non-empty answer.",
        "wrong_time": f"The cited times miss the relevant moment; the evidence lies{where}.",
        "wrong_object": "The boxes or object names do not match the annotated objects; "
                        "localise the objects the question is about.",
        "evidence_too_broad": "The predicted evidence is much wider than needed; narrow it to "
                              "the annotated span or region.",
        "drifted_answer": "The reasoning points one way but the answer says another; state "
                          "the conclusion the grounded evidence supports.",
        "wrong_event": f"The reasoning follows the wrong event; focus on what happens{where}.",
    }[cause]
    sentences = [first, fix]
    if g.key_frames and cause not in ("none", "incomplete_output"):
        times = ", ".join(_fmt(t) for _, t in g.key_frames[:6])
        sentences.append(f"Check the key frames at {times}.")
    return " ".join(sentences)


class AnnotationJudge:
    """Deterministic, offline judge from the record's annotations (the default)."""

    def __call__(self, example, completion) -> Judgement:
        g = gold_from_example(example)
        c = completion if isinstance(completion, Completion) else parse(completion)
        score = _answer_score(c, g)
        if g.task == "General video QA MCQ":
            verdict = "correct" if score == 1.0 else "wrong"
        else:
            verdict = "correct" if score >= 0.8 else "partial" if score >= 0.3 else "wrong"
        temporal = spatial = None
        if g.task == "temporal-spatial free-form QA":
            temporal = grounding.thk_temporal_point(c, g, 1.0) if g.key_frames else None
            spatial = grounding.thk_spatial(c, g) if g.key_items else None
        elif g.task in TEMPORAL_TASKS:
            temporal = grounding.thk_temporal_segment(c, g)
        elif g.task == "visual QA":
            spatial = grounding.thk_spatial(c, g)
        consistency = _consistency(c, g)
        if format_reward(c, g) == 0.0 or not c.answer:
            cause = "incomplete_output"
        elif verdict == "correct":
            cause = "none"
        elif temporal is not None and temporal < 0.5:
            cause = "wrong_time"
        elif spatial is not None and spatial < 0.3:
            cause = "wrong_object"
        elif _too_broad(c, g):
            cause = "evidence_too_broad"
        elif consistency < 0.5:
            cause = "drifted_answer"
        else:
            cause = "wrong_event"
        return Judgement(verdict=verdict, answer_score=float(score),
                         consistency=float(consistency), temporal_score=temporal,
                         spatial_score=spatial, error_cause=cause,
                         feedback=_feedback(cause, verdict, g))
