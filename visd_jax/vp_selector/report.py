"""Stage 3: how good the selector is (paper section 3.3; issue: accuracy and RL value).

Both tables are computed on the held-out examples of the collected dataset:
- accuracy of the predicted kind against the label, next to always answering the training
  set's majority label and to a uniform random choice (expected accuracy 1/5);
- the prompted reward each selection rule would give a hard example (raw rollouts' mean total
  below the coach's threshold), measured by the proxies' rollouts of that kind: learned vs
  fixed:darken vs raw vs the oracle (the best kind by reward). A kind that cannot be applied
  to an example (a box prompt without boxes) is coached raw, as the RL coach does.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from visd_jax.prompt_kinds import KINDS

RULES = ("learned", "fixed:darken", "raw", "oracle")


def _choice(rule: str, row: dict, pred: dict | None) -> str:
    s = row["scores"]
    if rule == "oracle":
        return max((k for k in KINDS if k in s), key=lambda k: (np.mean(s[k]["total"]), -KINDS.index(k)))
    kind = {"fixed:darken": "darken", "raw": "raw"}.get(rule) or (
        max(KINDS, key=lambda k: (pred.get(k, 0.0), -KINDS.index(k))) if pred else "raw")
    return kind if kind in s else "raw"


def evaluate(rows: list[dict], predictions: dict[str, dict[str, float]], *, hard_threshold: float) -> dict:
    train = [r for r in rows if not r["heldout"]]
    held = [r for r in rows if r["heldout"] and r["id"] in predictions]
    if not held:
        raise ValueError("no held-out example has a prediction: nothing to evaluate")
    counts = Counter(r["label"] for r in train)
    majority = max(KINDS, key=lambda k: (counts.get(k, 0), -KINDS.index(k)))
    acc = {
        "learned": float(np.mean([_choice("learned", r, predictions[r["id"]]) == r["label"] for r in held])),
        f"majority ({majority})": float(np.mean([r["label"] == majority for r in held])),
        "random (expected)": 1.0 / len(KINDS),
    }
    hard = [r for r in held if np.mean(r["scores"]["raw"]["total"]) < hard_threshold]
    reward = {}
    for rule in RULES:
        for name, part in (("hard", hard), ("all", held)):
            picks = [_choice(rule, r, predictions.get(r["id"])) for r in part]
            reward[(rule, name)] = (float(np.mean([np.mean(r["scores"][k]["total"]) for r, k in zip(part, picks)]))
                                    if part else float("nan"))
            reward[(rule, name + "_label_score")] = (float(np.mean(
                [np.mean(r["scores"][k]["acc"]) + np.mean(r["scores"][k]["grounding"]) for r, k in zip(part, picks)]))
                if part else float("nan"))
    return {"heldout": len(held), "hard": len(hard), "accuracy": acc, "majority": majority,
            "reward": {f"{a}/{b}": v for (a, b), v in reward.items()}}


def tables(summary: dict, result: dict) -> str:
    """Markdown: dataset, accuracy, prompted reward."""
    lines = ["| split | examples | " + " | ".join(KINDS) + " |", "| --- | ---: |" + " ---: |" * len(KINDS)]
    for split in ("train", "heldout"):
        d = summary[split]
        lines.append(f"| {split} | {d['examples']} | " + " | ".join(str(d["labels"][k]) for k in KINDS) + " |")
    lines += ["", f"| selector | held-out accuracy ({result['heldout']} examples) |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.3f} |" for k, v in result["accuracy"].items()]
    r = result["reward"]
    lines += ["", f"| selection | prompted reward, hard ({result['hard']}) | acc + grounding, hard | "
                  f"prompted reward, all held-out ({result['heldout']}) |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {rule} | {r[rule + '/hard']:.3f} | {r[rule + '/hard_label_score']:.3f} | {r[rule + '/all']:.3f} |"
              for rule in RULES]
    return "\n".join(lines)
