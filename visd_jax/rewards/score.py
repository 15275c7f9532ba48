"""`score_group`: the seven rewards of one prompt's G rollouts, and their weighted total."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from visd_jax.rewards.answer import ans_acc, ans_tiou, ans_viou
from visd_jax.rewards.config import DEFAULT, RewardConfig
from visd_jax.rewards.format import format_reward
from visd_jax.rewards.gold import gold_from_example
from visd_jax.rewards.grounding import (check_progress, thk_spatial, thk_temporal_point,
                                        thk_temporal_segment)
from visd_jax.rewards.parse import parse

REWARDS = {
    "ans_acc": ans_acc,
    "ans_tiou": ans_tiou,
    "ans_viou": ans_viou,
    "thk_temporal_point": thk_temporal_point,
    "thk_temporal_segment": thk_temporal_segment,
    "thk_spatial": thk_spatial,
    "format": format_reward,
}
REWARD_NAMES = tuple(REWARDS)


def score_group(completions: Sequence[str], example: dict, *, progress: float,
                weights: Mapping[str, float] | None = None,
                config: RewardConfig = DEFAULT) -> dict[str, np.ndarray]:
    """Score G completions of one STGR `example` at training `progress` p in [0, 1].

    Returns {reward name: float64 [G]} for the seven rewards plus
    "total" = sum_k weights[k] * reward_k (default weight 1.0 each, SPEC section 3; a
    missing name keeps weight 1.0, weight 0 drops a reward as the release's ablations do).
    Each completion is parsed once and the record validated once.
    """
    progress = check_progress(progress)
    if isinstance(completions, str) or not isinstance(completions, Sequence):
        raise ValueError("completions: expected a list of strings")
    w = {name: 1.0 for name in REWARD_NAMES}
    for name, value in (weights or {}).items():
        if name not in w:
            raise ValueError(f"weights: unknown reward {name!r}; known: {REWARD_NAMES}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValueError(f"weights[{name!r}]: expected a finite number, got {value!r}")
        w[name] = float(value)
    gold = gold_from_example(example)
    parsed = []
    for i, text in enumerate(completions):
        if not isinstance(text, str):
            raise ValueError(f"completions[{i}]: expected str, got {type(text).__name__}")
        parsed.append(parse(text))
    out = {name: np.array([fn(c, gold, progress, config=config) for c in parsed],
                          dtype=np.float64)
           for name, fn in REWARDS.items()}
    out["total"] = sum((w[name] * out[name] for name in REWARD_NAMES),
                       np.zeros(len(parsed), dtype=np.float64))
    return out
