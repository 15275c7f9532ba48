"""VP-Selector: which visual prompt a hard sample gets (VisionCoach, SPEC section 5).

A selector proposes candidate prompt kinds per example; the trainer rolls out every
candidate and keeps, per example, the kind whose prompted rollouts score best. `fixed:KIND`
proposes one kind (no choice to make); `oracle` proposes all five (raw with its hint
included) and so picks the best by reward, which is the paper's oracle; `cached:FILE` and
`learned:DIR` give the learned VP-Selector's choice (visd_jax/vp_selector), one per example.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from visd_jax.prompt_kinds import KINDS as PROMPT_KINDS


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
        return [PROMPT_KINDS for _ in metas]

    def __repr__(self):
        return "oracle"


class CachedSelector:
    """One kind per example from a prediction cache (the learned selector's, or the
    release's `{id: 0 | 1}`); an example missing from it gets raw, as the release does."""

    def __init__(self, predictions: Mapping[str, str], source: str):
        self.predictions, self.source = dict(predictions), source
        self.misses = 0

    def candidates(self, metas: Sequence[Mapping]) -> list[tuple[str, ...]]:
        out = []
        for m in metas:
            kind = self.predictions.get(str(m["id"]))
            self.misses += kind is None
            out.append((kind or "raw",))
        return out

    def __repr__(self):
        return self.source


def make_selector(spec: str, *, workdir=None, source=None):
    """'fixed:KIND', 'oracle', 'cached:FILE' (a prediction cache) or 'learned:DIR' (a
    trained VP-Selector run: its predictions for every example of `source` are computed
    once into `workdir`/vp_predictions.json and read from there after, frozen)."""
    from visd_jax.vp_selector.labels import read_predictions

    if spec == "oracle":
        return OracleSelector()
    if spec.startswith("fixed:"):
        return FixedSelector(spec[len("fixed:"):])
    if spec.startswith("cached:"):
        return CachedSelector(read_predictions(spec[len("cached:"):]), spec)
    if spec.startswith("learned:"):
        if workdir is None or source is None:
            raise ValueError("a learned selector needs the run's workdir and data source to cache its predictions")
        from etils import epath

        cache = epath.Path(workdir) / "vp_predictions.json"
        if not cache.exists():
            from visd_jax.vp_selector.model import precompute

            epath.Path(workdir).mkdir(parents=True, exist_ok=True)
            precompute(spec[len("learned:"):], source, str(cache))
        return CachedSelector(read_predictions(str(cache)), spec)
    raise ValueError(f"selector must be 'oracle', 'fixed:KIND', 'cached:FILE' or 'learned:DIR', got {spec!r}")


def pick_best(scores: Mapping[str, Sequence[float]]) -> list[str]:
    """Per example, the kind with the highest score; ties go to the earlier kind in
    PROMPT_KINDS order so the choice is deterministic."""
    kinds = [k for k in PROMPT_KINDS if k in scores]
    n = len(next(iter(scores.values())))
    return [max(kinds, key=lambda k: (scores[k][i], -kinds.index(k))) for i in range(n)]
