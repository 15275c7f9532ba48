"""Rewards: rollout text in, numbers out (SPEC sections 2-3).

`parse(text)` reads any string into a `Completion`; the seven rewards `ans_acc`,
`ans_tiou`, `ans_viou`, `thk_temporal_point`, `thk_temporal_segment`, `thk_spatial`,
`format` are functions of (completion, example, progress); `score_group` scores the G
rollouts of one STGR record. Definitions follow the VisionCoach release's reward code
(see each module's docstring for where it and the paper / Open-o3 Video differ).
"""
from visd_jax.rewards.answer import ans_acc, ans_tiou, ans_viou, rouge_mean
from visd_jax.rewards.config import RewardConfig
from visd_jax.rewards.format import format_reward
from visd_jax.rewards.gold import TASKS, Gold, gold_from_example
from visd_jax.rewards.grounding import (name_match, sigma_at, thk_spatial, thk_temporal_point,
                                        thk_temporal_segment)
from visd_jax.rewards.parse import Claim, Completion, TagCounts, parse
from visd_jax.rewards.score import REWARD_NAMES, REWARDS, score_group

# The SPEC name, as an attribute only (kept out of __all__ so `import *` cannot shadow the
# builtin); REWARDS and score_group use the key "format".
format = format_reward  # noqa: A001

__all__ = [
    "Claim", "Completion", "Gold", "RewardConfig", "REWARD_NAMES", "REWARDS", "TASKS",
    "TagCounts", "ans_acc", "ans_tiou", "ans_viou", "format_reward",
    "gold_from_example", "name_match", "parse", "rouge_mean", "score_group", "sigma_at",
    "thk_spatial", "thk_temporal_point", "thk_temporal_segment",
]
