"""The V-STaR question chains (Cheng et al. 2025) as the VisionCoach release asks them.

One V-STaR annotation is five questions about one video (the release's
`eval/test/test_vstar_multi_images.py`, `--think_mode`, greedy, 16 frames at 1 fps):

  vqa         what:  the question itself                       -> Acc (judge score >= 2)
  temporal    chain 1 when: the temporal question               -> tIoU_1
  spatial     chain 1 where: boxes per whole second of the gold span -> vIoU_1
  spatial_2   chain 2 where: boxes for the frames it finds related  -> vIoU_2
  temporal_2  chain 2 when: the temporal question, given the gold boxes -> tIoU_2

Here: the annotation schema (`check_item`), the five prompts (the release's think-mode text;
its video placeholder is dropped because the policy's own layout puts the frames before the
question), the answer parsers (`parse_span`, `parse_boxes`: the release's rules, written as
functions of the text alone) and the answer judges (`match_score` offline, `judge_prompt`
for a judge model). Scoring is `visd_jax.eval.vstar.evaluate`.

Where this differs from the release, it says so: boxes are mapped from the policy's input
pixels to the annotation's width x height (`parse_boxes(rescale=True)`; the release's
script defines that mapping and never calls it, so its vIoU compares boxes from two pixel
frames unless the input has the video's size; `eval.vstar_boxes=release` scores as it does),
and unusable replies (numbers too long for int, JSON nested past the recursion limit)
parse to nothing instead of stopping the run.
"""
from __future__ import annotations

import json
import math
import re

QUESTIONS = ("vqa", "temporal", "spatial", "spatial_2", "temporal_2")
SYSTEM = "You are a helpful assistant."
REQUIRED = {"vid": str, "question": str, "answer": str, "fps": (int, float), "frame_count": int,
            "width": int, "height": int, "timestamps": list, "bboxes": list, "temporal_question": str,
            "spatial_question": str, "spatial_question_2": str}

THINK = ("You must first think about the reasoning process in the mind and then provide the user with the "
         "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
         "tags, respectively.")
_GROUNDED = (" All reasoning must be grounded in visual evidence from the video. When you mention any related "
             "object, person, or specific visual element, you must strictly follow the following format: "
             "`<obj>object_name</obj><box>bounding_box</box>at<t>time_in_seconds</t>s`. Do not use <box>, <obj> "
             "and <t> in the answer part.")
_SPAN_FORMAT = "The answer must follow the following format: `From <t>start_time</t>s to <t>end_time</t>s'"


class VStarError(ValueError):
    """An annotation that cannot be asked or scored; names the video and the field."""


def _is(v, t) -> bool:
    return isinstance(v, t) and not isinstance(v, bool)


def check_item(item, index: int | None = None) -> dict:
    """The annotation as given, or VStarError naming what is wrong with it."""
    where = f"V-STaR item {index}" if index is not None else "V-STaR item"
    if not isinstance(item, dict):
        raise VStarError(f"{where}: not a JSON object but {type(item).__name__}")
    where = f"{where} (vid {item.get('vid')!r})"
    for key, t in REQUIRED.items():
        if not _is(item.get(key), t):
            raise VStarError(f"{where}: '{key}' must be {getattr(t, '__name__', 'a number')}, got {item.get(key)!r}")
    if not (math.isfinite(item["fps"]) and item["fps"] > 0 and item["frame_count"] > 0 and item["width"] > 0
            and item["height"] > 0) or not math.isfinite(item["frame_count"] / item["fps"]):
        raise VStarError(f"{where}: fps, frame_count, width and height must be positive and finite")
    ts = item["timestamps"]
    if len(ts) != 2 or not all(_is(t, (int, float)) and math.isfinite(t) for t in ts) or ts[0] > ts[1]:
        raise VStarError(f"{where}: 'timestamps' must be [start, end] seconds with start <= end, got {ts!r}")
    if not item["bboxes"]:
        raise VStarError(f"{where}: 'bboxes' is empty (vIoU needs at least one gold box)")
    for b in item["bboxes"]:
        if not isinstance(b, dict) or not all(_is(b.get(k), (int, float)) and math.isfinite(b[k])
                                              for k in ("timestamp", "xmin", "ymin", "xmax", "ymax")):
            raise VStarError(f"{where}: a box needs numbers timestamp, xmin, ymin, xmax, ymax; got {b!r}")
    return item


def video_length(item: dict) -> float:
    return round(item["frame_count"] / item["fps"], 2)


def _time_range(item: dict) -> list[int]:
    st, et = math.ceil(item["timestamps"][0]), math.floor(item["timestamps"][1])
    return list(range(st, et + 1))


def gold_boxes(item: dict) -> list[list]:
    """The gold boxes as the chain-2 prompts list them: [[xmin, ymin, xmax, ymax], ...]."""
    return [[b["xmin"], b["ymin"], b["xmax"], b["ymax"]] for b in item["bboxes"]]


def prompt(item: dict, question: str) -> str:
    """The user text of one of the five questions (after the video's frames)."""
    length, (w, h) = video_length(item), (item["width"], item["height"])
    if question == "vqa":
        return (f"Answer the question about the video: {item['question']} \n (If the answer is a person, you "
                f"don't need to identify the person.)" + THINK + _GROUNDED)
    if question in ("temporal", "temporal_2"):
        head = (f"This video is {length} seconds long" + (". " if question == "temporal" else
                f" with a resolution of {w}x{h} (width x height). "))
        body = f"\nAnswer the question about the video: {item['temporal_question']} \n"
        if question == "temporal_2":
            boxes = gold_boxes(item)
            body += (f"There are {len(boxes)} bounding boxes of the key object related to the question in the "
                     f"video without knowing the time, which are:{boxes}. ")
        else:
            body += ". "
        return head + body + THINK + " " + _SPAN_FORMAT
    if question == "spatial":
        rng = _time_range(item)
        first = rng[0] if rng else 0
        return (f"\nPlease answer the question about the video: {item['spatial_question']} with a series of "
                f"bounding boxes in [x1, y1, x2, y2] format.\n{THINK}\nIn the answer part, for each whole second "
                f"within the time range {rng} provided (inclusive of the boundaries), output a series of bounding "
                f"boxes of the object in JSON format. The keys should be the whole seconds (as strings), and the "
                f"values should be the box in [x1, y1, x2, y2] format.\n"
                f"Example output of the answer part: {{\"{first}\": [x1, y1, x2, y2],...}}\n")
    if question == "spatial_2":
        n = len(item["bboxes"])
        return (f"\nPlease answer the question about the video: {item['spatial_question_2']} with a series of "
                f"bounding boxes in [x1, y1, x2, y2] format.\n{THINK}\nIn the answer part, for each whole second "
                f"that may related to the question, output a series of bounding boxes of the object in JSON "
                f"format. You only need to output {n} bbox(es). You need to determine which frame is related to "
                f"the question, and you don't need to output the bbox for the frames not related to the "
                f"question.\nThe keys should be the whole seconds (as strings), and the values should be the "
                f"bounding box in [x0,y0,x1,y1] format.\n\nExample output of the answer part:\n"
                f"{{\"0\": [x0,y0,x1,y1], \"1\":..., ..., \"{n}\":...}} (if the frames at 0~{n} second are "
                f"related to the questions)\n")
    raise ValueError(f"question must be one of {QUESTIONS}, got {question!r}")


_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_MMSS = re.compile(r"(\d+:\d+)")
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")


def answer_text(text: str) -> str:
    """The <answer> part when there is one, else the whole reply (the release's rule)."""
    m = _ANSWER.search(text)
    return m.group(1).strip() if m else text


def parse_span(text: str) -> list[float] | None:
    """[start, end] seconds as the release reads them: each mm:ss replaced (in order, as plain
    text) by its seconds, then exactly two numbers, else None."""
    a = answer_text(text)
    try:
        for ts in _MMSS.findall(a):
            m, sec = (int(x) for x in ts.split(":"))
            a = a.replace(ts, f"<t>{m * 60 + sec}</t>s")
        nums = _NUMBER.findall(a)
        return [float(nums[0]), float(nums[1])] if len(nums) == 2 else None
    except ValueError:  # a number too long for int(): no span, as no parse
        return None


def _balance(s: str) -> str:
    """Closes or opens unbalanced brackets, as the release repairs a cut-off JSON answer."""
    for o, c in (("[", "]"), ("{", "}")):
        d = s.count(o) - s.count(c)
        s = s + c * d if d > 0 else o * (-d) + s
    return s


def _json_span(a: str) -> str | None:
    m = re.search(r"```json\s*\n(\[.*?\]|\{.*?\})\s*\n```", a, re.DOTALL)
    if m is None:
        m = re.search(r"(\[[\s\S]*\]|\{[\s\S]*\})", a)
    return m.group(1).strip().replace("'", '"') if m else None


def _number(x) -> bool:
    return _is(x, (int, float)) and math.isfinite(x)


def boxes_of(value) -> list[list[float]]:
    """Every [x1, y1, x2, y2] an answer gives for one second: one box, or a list of them (the
    reference scorer takes the best; anything else in the list scores 0 there)."""
    if isinstance(value, list) and len(value) == 4 and all(_number(x) for x in value):
        return [[float(x) for x in value]]
    if isinstance(value, list):
        return [[float(x) for x in b] for b in value
                if isinstance(b, list) and len(b) == 4 and all(_number(x) for x in b)]
    return []


def _release_json(span: str):
    """The release's `extract_bounding_boxes` on a JSON span: a dict, or None where it
    returns a list (its repaired lists) or nothing, which the reference scorer scores 0."""
    try:
        data = json.loads(span)
        if isinstance(data, list) and all(isinstance(d, dict) for d in data):
            merged = {}
            for d in data:
                merged.update(d)
            return merged
        if isinstance(data, list):
            return {str(p[0]): p[1] for p in data}  # [second, box] pairs; anything else raises
        return data if isinstance(data, dict) else None
    except (ValueError, TypeError, IndexError, KeyError, RecursionError):
        try:
            data = json.loads(_balance(span))
        except (ValueError, RecursionError):
            return None
        return data if isinstance(data, dict) else None


def parse_boxes(text: str, *, input_size: tuple[int, int], video_size: tuple[int, int],
                rescale: bool = True) -> dict | None:
    """{second key: [[x1, y1, x2, y2], ...]} from the answer's JSON, or None.

    The release's reading: a ```json block or the outermost bracketed span, ' as ", a dict,
    a list of one-key dicts or of [second, box] pairs, one bracket-count repair. Keys are
    kept as written (the scorer matches them to `str(timestamp)`). `rescale`: boxes from
    the model's input pixels (`input_size`) to the video's (`video_size`); False keeps them
    as given, which is what the release's script scores."""
    span = _json_span(answer_text(text))
    data = _release_json(span) if span is not None else None
    if data is None:
        return None
    (iw, ih), (w, h) = input_size, video_size
    sx, sy = (w / iw, h / ih) if rescale and iw > 0 and ih > 0 else (1.0, 1.0)
    out = {}
    for k, v in data.items():
        boxes = boxes_of(v)
        if boxes:
            out[str(k)] = [[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for b in boxes]
    return out


# --- the VQA judge ---------------------------------------------------------------------------

JUDGE_SYSTEM = (
    "\nAs an AI assistant, your task is to evaluate a candidate answer in comparison to a given correct answer.\n"
    "The question itself, the correct 'groundtruth' answer, and the candidate answer will be provided to you.\n"
    "Your assessment should range from 0 to 3, based solely on the semantic similarity between the groundtruth "
    "and the candidate answer, disregarding any grammatical differences.\n"
    "A rating of 0 suggests no similarity, implying the candidate answer is entirely incorrect.\n"
    "A rating of 1 suggests low similarity, meaning the candidate answer is largely incorrect.\n"
    "A rating of 2 suggests high similarity, meaning the candidate answer is largely correct.\n"
    "Lastly, a rating of 3 indicates complete similarity, which means the candidate answer is entirely correct.\n"
    "Your response should be a single integer from 0, 1, 2, or 3.\n")


def judge_prompt(question: str, gold: str, candidate: str) -> str:
    """The user turn V-STaR's judge (Qwen2.5-72B-Instruct in the paper) is asked."""
    return f"Question: {question}\nGroundtruth answer: {gold}\nCandidate answer: {candidate}\nYour response: "


def judge_reply_score(reply) -> int:
    """V-STaR reads the judge's whole reply as an int (>= 2: correct); anything else is -1,
    which it counts as 0."""
    try:
        return int(str(reply).strip()) if reply is not None else -1
    except ValueError:
        return -1


_STOP = frozenset({"a", "an", "the", "is", "are", "was", "were", "it", "in", "of", "to", "video"})


def _words(s: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", s.lower()) if w not in _STOP]


def match_score(gold: str, candidate: str) -> int:
    """An offline stand-in for the judge (not the paper's), strict so that it never passes a
    wrong answer: 3 when the candidate holds every content word of the gold answer (2 is
    never given), 1 when it holds at least half of them, else 0. A one-letter gold answer (a
    multiple-choice option) must be the candidate's first word. "The ball is red" vs "the ball
    is orange" is 1: a colour, a count or a name that differs fails."""
    g, c = set(_words(gold)), _words(candidate)
    if not g or not c:
        return 0
    if len(g) == 1 and len(next(iter(g))) == 1:
        return 3 if c[0] in g else 0
    recall = len(g & set(c)) / len(g)
    return 3 if recall == 1.0 else 1 if recall >= 0.5 else 0
