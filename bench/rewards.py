"""Reward scoring throughput: 1024 completions of ~768 tokens on one CPU core.

Compares `visd_jax.rewards.score_group` with the naive way, the regex statement of the
reference reward code (`tests/rewards/oracle.py`: Python `re` plus rouge-score, one pass
per reward), on the same completions, plus how both scale on adversarial tag soup.
Run: `python bench/rewards.py` (about 20 s). Prints a markdown table.
"""
from __future__ import annotations

import os
import random
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.rewards import oracle  # noqa: E402
from tests.rewards.records import ALL  # noqa: E402
from visd_jax.rewards import score_group  # noqa: E402

WORDS = ("the man walks to the table and picks up a red ball then he turns around looks at "
         "the door while a woman in a blue coat enters the room carrying a bag").split()
NAMES = ["man", "man in red shirt", "basketball", "ball", "woman", "blue coat", "door", "bag"]


def _prose(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def completion(rng: random.Random, task: str) -> str:
    """A rollout of about 768 tokens (~3.3 KB): prose with ~20 grounded claims."""
    parts = []
    for _ in range(20):
        boxes = "".join(
            f"<box>[{rng.randint(0, 500)}, {rng.randint(0, 250)}, {rng.randint(500, 640)}, "
            f"{rng.randint(250, 360)}]</box>" for _ in range(rng.choice((1, 1, 2))))
        parts.append(f"{_prose(rng, 18)} <obj>{rng.choice(NAMES)}</obj>{boxes}at"
                     f"<t>{rng.uniform(0, 18):.1f}</t>s.")
    if task == "temporal QA (MCQ)":
        answer = f"From <t>{rng.uniform(0, 10):.1f}</t>s to <t>{rng.uniform(10, 20):.1f}</t>s." \
                 f"\nCorrect Option: {rng.choice('ABCD')}"
    elif task == "temporal QA":
        answer = f"From <t>{rng.uniform(0, 5):.1f}</t>s to <t>{rng.uniform(5, 10):.1f}</t>s"
    elif task == "General video QA MCQ":
        answer = rng.choice("ABCD")
    elif task == "visual QA":
        answer = "<obj>pedestrian</obj><box>[60, 30, 150, 120]</box>"
    else:
        answer = _prose(rng, 25)
    return f"<think>{' '.join(parts)}</think><answer>{answer}</answer>"


def _time(fn, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    rng = random.Random(0)
    groups = []  # 256 prompts x G = 4
    for i in range(256):
        ex = ALL[i % len(ALL)]
        groups.append((ex, [completion(rng, ex["task"]) for _ in range(4)]))
    chars = statistics.mean(len(c) for _, cs in groups for c in cs)

    def ours():
        for ex, cs in groups:
            score_group(cs, ex, progress=0.3)

    def naive():
        for ex, cs in groups:
            for c in cs:
                oracle.all_rewards(c, ex, 0.3)

    st_groups = [(ALL[0], [completion(rng, ALL[0]["task"]) for _ in range(4)])
                 for _ in range(256)]

    def ours_st():
        for ex, cs in st_groups:
            score_group(cs, ex, progress=0.3)

    def naive_st():
        for ex, cs in st_groups:
            for c in cs:
                oracle.all_rewards(c, ex, 0.3)

    rows = [("1024 completions (256 groups x 4), the 6 task types in turn", _time(ours),
             _time(naive, repeats=1)),
            ("1024 completions, all temporal-spatial free-form QA (every reward active)",
             _time(ours_st), _time(naive_st, repeats=1))]
    for n in (3_000, 10_000):  # naive is super-linear here; 30 KB takes minutes
        soup = "<think>" + "<obj>a</obj><box>[" * (n // 18) + "</think><answer>x</answer>"
        st_ex = ALL[0]
        rows.append((f"{n // 1000} KB unclosed-claim tag soup, 1 completion",
                     _time(lambda: score_group([soup], st_ex, progress=0.3)),
                     _time(lambda: oracle.all_rewards(soup, st_ex, 0.3), repeats=1)))
    print(f"mean completion length: {chars:.0f} characters (~768 tokens)\n")
    print("| case | visd_jax.rewards | naive regex (reference code's way) | speed-up |")
    print("|---|---:|---:|---:|")
    for name, a, b in rows:
        print(f"| {name} | {a * 1e3:.0f} ms | {b * 1e3:.0f} ms | {b / a:.1f}x |")


if __name__ == "__main__":
    main()
