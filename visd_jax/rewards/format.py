"""`format` reward (SPEC section 3, item 7; release `format_reward`).

0 if there is no `<think>...</think>` or no `<answer>...</answer>` block, if `<think>` and
`</think>` (or `<answer>` and `</answer>`) occur a different number of times in the text, or
if `<obj>`, `<t>` or `<box>` are unbalanced inside the think block. Otherwise 1.0 when the
reasoning is grounded, else 0.5. Grounded: at least one `<obj>`, `<t>` and `<box>` in think;
for temporal tasks instead at least two `<t>`; for visual QA also (not instead) any
`<obj>WORD</obj><box>[...]</box>` anywhere in the text; General video QA is always
"grounded".
"""
from __future__ import annotations

from visd_jax.rewards.answer import _inputs
from visd_jax.rewards.config import DEFAULT, RewardConfig
from visd_jax.rewards.gold import TEMPORAL_TASKS


def format_reward(completion, example, progress: float = 0.0, *,
                  config: RewardConfig = DEFAULT) -> float:
    del progress, config
    c, g = _inputs(completion, example)
    if c.think is None or not c.has_answer or not c.tags.balanced:
        return 0.0
    tags = c.tags
    grounded = tags.obj[0] > 0 and tags.t[0] > 0 and tags.box[0] > 0
    if g.task in TEMPORAL_TASKS:
        grounded = tags.t[0] >= 2
    if g.task == "visual QA" and c.word_obj_box:
        grounded = True
    return 1.0 if grounded or "General video QA" in g.task else 0.5
