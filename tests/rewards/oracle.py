"""A slow, regex-based statement of the reference reward definitions, used as an oracle.

Written for the tests from the behaviour of the VisionCoach release's `reward_func.py`
(regular expressions applied with Python's `re`, exceptions meaning 0), with the release
run-script settings avg / soft / matched / symmetric gate. It shares no code with
`visd_jax.rewards`; the only deliberate differences are the NaN guards that the library
documents (a non-finite value counts 0) and ROUGE, which is taken from rouge-score.
"""
import ast
import json
import math
import re

import numpy as np
from rouge_score import rouge_scorer

_SCORER = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_ANSWER = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)
_SPAN = re.compile(r"<t>(\d+\.?\d*)</t>s to <t>(\d+\.?\d*)</t>s")
_TIME = re.compile(r"<t>([\d.]+)</t>s")
_BOX = re.compile(r"<box>(\[.*?\])</box>")
_CLAIM = re.compile(r"<obj>(.*?)</obj>((?:<box>\[.*?\]</box>)+)at<t>(.*?)</t>s", re.DOTALL)


def _finite(x):
    return float(x) if math.isfinite(x) else 0.0


def _iou(gt, pred):
    try:
        if not (isinstance(pred, list) and len(pred) == 4):
            return 0.0
        a, b = np.array(gt, dtype=float), np.array(pred, dtype=float)
    except (ValueError, TypeError, IndexError, OverflowError):
        return 0.0
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return _finite(inter / union) if union > 0 else 0.0


def _answer(text):
    m = _ANSWER.search(text)
    return m.group(1).strip() if m else ""


def _letters(x):
    return [x, x + ".", f"({x})", f"[{x}]"]


def ans_acc(text, ex):
    out, task, gold = _answer(text), ex["task"], ex["answer"]
    if task == "temporal QA (MCQ)":
        parts = out.split("Correct Option:")
        return float(len(parts) > 1 and parts[1].strip() in _letters(gold.split("\n")[0].strip()))
    if task == "General video QA MCQ":
        return float(out.strip() in _letters(gold.strip()))
    if task in ("visual QA", "temporal QA"):
        return 0.0
    s = _SCORER.score(gold.strip(), out)
    return max(0.0, min(1.0, (s["rouge1"].fmeasure + s["rouge2"].fmeasure
                              + s["rougeL"].fmeasure) / 3))


def _gold_span(ex):
    g = ex["answer"] if ex["task"] == "temporal QA" else ex["answer"].split("\n")[1]
    return ast.literal_eval(g)


def ans_tiou(text, ex):
    if ex["task"] not in ("temporal QA", "temporal QA (MCQ)"):
        return 0.0
    m = _SPAN.search(_answer(text))
    if not m:
        return 0.0
    s, e = float(m.group(1)), float(m.group(2))
    if e < s:
        return 0.0
    g0, g1 = _gold_span(ex)
    inter, union = max(0, min(e, g1) - max(s, g0)), max(e, g1) - min(s, g0)
    if union == 0 or not math.isfinite(union):
        return 0.0
    return _finite(inter / union)


def _vqa_gold(ex):
    g = json.loads(_BOX.search(ex["answer"]).group(1))
    (w, h), (rw, rh) = ex["image_size"], ex.get("image_size_refine", ex["image_size"])
    return [g[0] * rw / w, g[1] * rh / h, g[2] * rw / w, g[3] * rh / h]


def ans_viou(text, ex):
    if ex["task"] != "visual QA":
        return 0.0
    m = _BOX.search(_answer(text))
    if not m:
        return 0.0
    try:
        pred = json.loads(m.group(1))
    except (ValueError, RecursionError):
        return 0.0
    return _iou(_vqa_gold(ex), pred)


def _times(think):
    try:
        return [float(x) for x in _TIME.findall(think)]
    except ValueError:
        return []


def thk_temporal_point(text, ex, progress):
    m = _THINK.search(text)
    if not m or ex["task"] != "temporal-spatial free-form QA":
        return 0.0
    times = _times(m.group(1))
    if not times:
        return 0.0
    sigma = 4 * (1 - progress) if progress < 0.75 else 1.0
    gts = [f["time"] for f in ex["key_frames"]]
    return sum(_finite(np.exp(-min(abs(t - g) for g in gts) ** 2 / (2 * sigma ** 2)))
               for t in times) / len(times)


def thk_temporal_segment(text, ex):
    m = _THINK.search(text)
    if not m or ex["task"] not in ("temporal QA", "temporal QA (MCQ)"):
        return 0.0
    times = _times(m.group(1))
    g0, g1 = _gold_span(ex)
    return sum(g0 <= t <= g1 for t in times) / len(times) if times else 0.0


def _soft(p, g):
    p, g = p.lower().strip(), g.lower().strip()
    return p == g or p in g or g in p or bool(set(p.split()) & set(g.split()))


def thk_spatial(text, ex):
    think, ans = _THINK.search(text), re.search(r"<answer>(.*?)</answer>", text, re.DOTALL)
    if not think or not ans:
        return 0.0
    if ex["task"] == "visual QA":
        preds = []
        for s in _BOX.findall(think.group(1)):
            try:
                preds.append(json.loads(s))
            except (ValueError, RecursionError):
                pass
        return max([0.0] + [_iou(_vqa_gold(ex), p) for p in preds])
    if ex["task"] != "temporal-spatial free-form QA":
        return 0.0
    claims = []
    for m in _CLAIM.finditer(think.group(1)):
        try:
            claims.append((m.group(1).strip(), float(m.group(3).strip()),
                           [json.loads(b) for b in re.findall(r"\[.*?\]", m.group(2))]))
        except (ValueError, RecursionError):
            continue
    w, h = ex["image_size"]
    total, matched = 0.0, 0
    for name, t, boxes in claims:
        near = [f for f in ex["key_frames"] if abs(f["time"] - t) <= 1.0]
        if not near:
            continue
        best = min(near, key=lambda f: abs(f["time"] - t))  # first on ties, like a strict <
        objects = ex["key_items"].get(str(best["idx"]), {})
        scores = []
        for obj, gboxes in objects.items():
            if not _soft(name, obj) or not gboxes:
                continue
            px = [[b[0] * w, b[1] * h, b[2] * w, b[3] * h] for b in gboxes]
            scores.append(np.mean([max(_iou(g, c) for c in boxes) for g in px]))
        if scores:
            matched += 1
            total += float(np.mean(scores))
    return total / max(1, matched)


def format_reward(text, ex):
    think = _THINK.search(text)
    if not think or not re.search(r"<answer>.*?</answer>", text, re.DOTALL):
        return 0.0
    if text.count("<think>") != text.count("</think>") or \
            text.count("<answer>") != text.count("</answer>"):
        return 0.0
    th = think.group(1)
    counts = {t: (th.count(f"<{t}>"), th.count(f"</{t}>")) for t in ("obj", "t", "box")}
    if any(a != b for a, b in counts.values()):
        return 0.0
    ok = all(counts[t][0] > 0 for t in counts)
    if ex["task"] in ("temporal QA", "temporal QA (MCQ)"):
        ok = counts["t"][0] >= 2
    if ex["task"] == "visual QA" and re.search(r"<obj>(\w+)</obj><box>(\[.*?\])</box>", text):
        ok = True
    return 1.0 if ok or "General video QA" in ex["task"] else 0.5


def all_rewards(text, ex, progress):
    return {"ans_acc": ans_acc(text, ex), "ans_tiou": ans_tiou(text, ex),
            "ans_viou": ans_viou(text, ex), "thk_temporal_point": thk_temporal_point(
                text, ex, progress),
            "thk_temporal_segment": thk_temporal_segment(text, ex),
            "thk_spatial": thk_spatial(text, ex), "format": format_reward(text, ex)}
