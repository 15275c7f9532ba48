"""`ModelJudge` (a local model behind a rubric prompt) and `privileged_block`.

ModelJudge accepts any callable from prompt text to generated text, so the project's own
Flax model plugs in later. The reply must be one JSON object with exactly the `Judgement`
fields; anything else (an exception from the model, non-JSON text, a missing or extra key,
a value of the wrong type or out of range, 1 or 5 feedback sentences) is a failure, and the
`AnnotationJudge` answers instead. `fallbacks` counts those failures, `calls` all calls.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

from visd_jax.judge.annotation import (ERROR_CAUSES, VERDICTS, AnnotationJudge, Judgement,
                                       verified_window)
from visd_jax.rewards.gold import gold_from_example
from visd_jax.rewards.parse import Completion

FIELDS = tuple(f.name for f in dataclasses.fields(Judgement))

RUBRIC = """You are grading a video-reasoning answer against verified annotations.
Question: {question}
Verified answer: {answer}
Verified temporal window: {window}
Verified key frames and objects: {evidence}

Model output to grade:
<<<
{rollout}
>>>

Reply with ONE JSON object and nothing else, with exactly these keys:
"verdict": "correct" | "partial" | "wrong" (is the final answer right?),
"answer_score": number in [0, 1],
"consistency": number in [0, 1] (does the reasoning support the final answer?),
"temporal_score": number in [0, 1] or null (are the cited times in the verified window?),
"spatial_score": number in [0, 1] or null (do boxes and object names match the evidence?),
"error_cause": one of {causes},
"feedback": 2 to 4 sentences telling the model how to correct its reasoning."""


def _evidence(example: dict) -> str:
    g = gold_from_example(example)
    parts = []
    for idx, t in g.key_frames:
        objects = example.get("key_items", {}).get(str(idx)) or {}
        names = ", ".join(f"{n} {b}" for n, b in objects.items())
        parts.append(f"frame {idx} at {t:.1f}s" + (f": {names}" if names else ""))
    return "; ".join(parts) or "none"


def rubric_prompt(example: dict, text: str) -> str:
    g = gold_from_example(example)
    window = verified_window(g)
    return RUBRIC.format(
        question=example.get("question", ""), answer=g.answer,
        window=f"{window[0]:.1f}s to {window[1]:.1f}s" if window else "not annotated",
        evidence=_evidence(example), rollout=text, causes=" | ".join(ERROR_CAUSES))


def parse_judgement(reply: str) -> Judgement:
    """Strict: the whole reply (surrounding whitespace aside) is one JSON object with exactly
    the Judgement keys and valid values; raises ValueError otherwise."""
    value = json.loads(reply.strip())
    if not isinstance(value, dict):
        raise ValueError(f"judge reply: expected a JSON object, got {type(value).__name__}")
    if set(value) != set(FIELDS):
        raise ValueError(f"judge reply: keys {sorted(value)} != {sorted(FIELDS)}")
    if value["verdict"] not in VERDICTS or value["error_cause"] not in ERROR_CAUSES:
        raise ValueError("judge reply: bad verdict or error_cause")
    return Judgement(**value)  # __post_init__ checks ranges and the sentence count


class ModelJudge:
    def __init__(self, generate: Callable[[str], str], fallback: AnnotationJudge | None = None):
        if not callable(generate):
            raise ValueError("ModelJudge(generate): expected a callable prompt -> text")
        self.generate = generate
        self.fallback = fallback or AnnotationJudge()
        self.calls = 0
        self.fallbacks = 0

    def __call__(self, example: dict, completion) -> Judgement:
        self.calls += 1
        text = completion.text if isinstance(completion, Completion) else completion
        try:
            reply = self.generate(rubric_prompt(example, text))
            if not isinstance(reply, str):
                raise ValueError("judge model returned a non-string")
            return parse_judgement(reply)
        except Exception:  # noqa: BLE001  any model or parse failure means: use the fallback
            self.fallbacks += 1
            return self.fallback(example, completion)

    def many(self, examples, completions, *, generate_many: Callable[[list[str]], list[str]] | None = None
             ) -> list[Judgement]:
        """Judges rollout i of `completions` against `examples[i]` with ONE batched model call
        (`generate_many`, prompts -> replies) when given; each reply fails over on its own."""
        if len(examples) != len(completions):
            raise ValueError(f"{len(examples)} examples but {len(completions)} completions")
        if generate_many is None:
            return [self(e, c) for e, c in zip(examples, completions)]
        texts = [c.text if isinstance(c, Completion) else c for c in completions]
        self.calls += len(texts)
        try:
            replies = list(generate_many([rubric_prompt(e, t) for e, t in zip(examples, texts)]))
            if len(replies) != len(texts):
                raise ValueError(f"judge model returned {len(replies)} replies for {len(texts)} prompts")
        except Exception:  # noqa: BLE001  the whole batch failed: every rollout falls back
            self.fallbacks += len(texts)
            return [self.fallback(e, c) for e, c in zip(examples, completions)]
        out = []
        for e, c, reply in zip(examples, completions, replies):
            try:
                if not isinstance(reply, str):
                    raise ValueError("judge model returned a non-string")
                out.append(parse_judgement(reply))
            except Exception:  # noqa: BLE001
                self.fallbacks += 1
                out.append(self.fallback(e, c))
        return out


def privileged_block(example: dict, judgement: Judgement) -> str:
    """The hidden block appended to the teacher's prompt (SPEC section 6): verified answer,
    verified temporal window, verified key-frame times and the judge's feedback."""
    g = gold_from_example(example)
    window = verified_window(g)
    times = ", ".join(f"{t:.1f}s" for _, t in g.key_frames) or "not annotated"
    return "\n".join([
        "[Verified information for grading; not visible to the student]",
        f"Verified answer: {g.answer}",
        "Verified temporal window: "
        + (f"{window[0]:.1f}s to {window[1]:.1f}s" if window else "not annotated"),
        f"Verified key-frame times: {times}",
        f"Judge ({judgement.verdict}, cause: {judgement.error_cause}): {judgement.feedback}",
    ])
