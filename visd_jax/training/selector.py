"""VP-Selector: which visual prompt a hard sample gets (VisionCoach, SPEC section 5).

A selector proposes candidate prompt kinds per example; the trainer rolls out every
candidate and keeps, per example, the kind whose prompted rollouts score best. `fixed:KIND`
proposes one kind (no choice to make); `oracle` proposes all four and so picks the best by
reward, which is the paper's oracle. The learned classifier plugs in as another selector.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from visd_jax.prompt_kinds import KINDS as PROMPT_KINDS, VISUAL_PROMPTS


class FixedSelector:
    def __init__(self, kind: str):
        if kind not in PROMPT_KINDS:
            raise ValueError(f"fixed selector kind must be one of {PROMPT_KINDS}, got {kind!r}")
        self.kind = kind

    def candidates(self, metas: Sequence[Mapping]) -> list[tuple[str, ...]]:
        return [(self.kind,) for _ in metas]

    def __repr__(self):
        return f"fixed:{self.kind}"


class OracleSelector:
    def candidates(self, metas: Sequence[Mapping]) -> list[tuple[str, ...]]:
        return [VISUAL_PROMPTS for _ in metas]

    def __repr__(self):
        return "oracle"


def make_selector(spec: str):
    """'fixed:KIND' or 'oracle'."""
    if spec == "oracle":
        return OracleSelector()
    if spec.startswith("fixed:"):
        return FixedSelector(spec[len("fixed:"):])
    raise ValueError(f"selector must be 'oracle' or 'fixed:KIND', got {spec!r}")


def pick_best(scores: Mapping[str, Sequence[float]]) -> list[str]:
    """Per example, the kind with the highest score; ties go to the earlier kind in
    PROMPT_KINDS order so the choice is deterministic."""
    kinds = [k for k in PROMPT_KINDS if k in scores]
    n = len(next(iter(scores.values())))
    return [max(kinds, key=lambda k: (scores[k][i], -kinds.index(k))) for i in range(n)]
