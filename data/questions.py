"""STGR-format question records with real ground truth for one rendered scene.

One record per task type of SPEC section 1. Every record carries `key_frames`
(`{"idx": source frame index, "time": seconds}`) and `key_items`
(`{str(idx): {object name: [[x1, y1, x2, y2] normalised to 0..1]}}`) computed from the
scene geometry, so grounding rewards can be checked against truth.
"""
from __future__ import annotations

import numpy as np

from visd_jax.text import system as text_system
from data.scenes import COLOURS, SHAPES, Scene, SceneObject

IMAGE_TASK = "visual QA"
# the video tasks of SPEC section 1, from the one list of task names
TASKS: tuple[str, ...] = tuple(t for t in text_system.TASKS if t != IMAGE_TASK)
LETTERS = "ABCD"


def _norm_box(box, width: int, height: int) -> list[float]:
    x1, y1, x2, y2 = box
    return [round(x1 / width, 4), round(y1 / height, 4), round(x2 / width, 4),
            round(y2 / height, 4)]


def _key(scene: Scene, boxes, frames: list[int], names: list[str]) -> dict:
    """key_frames and key_items for the given source frames and objects visible there."""
    key_frames, key_items = [], {}
    for k in sorted(set(frames)):
        items = {n: [_norm_box(boxes[k][n], scene.width, scene.height)]
                 for n in names if n in boxes[k]}
        if not items:
            continue
        key_frames.append({"idx": int(k), "time": scene.time(k)})
        key_items[str(k)] = items
    return {"key_frames": key_frames, "key_items": key_items}


def _merge(keys: list[dict]) -> dict:
    """One record's key_frames / key_items from several `_key` results."""
    frames, items = {}, {}
    for k in keys:
        frames.update({kf["idx"]: kf for kf in k["key_frames"]})
        for f, objs in k["key_items"].items():
            items.setdefault(f, {}).update(objs)
    return {"key_frames": [frames[i] for i in sorted(frames)], "key_items": items}


def _window(scene: Scene, obj: SceneObject) -> list[float]:
    return [scene.time(obj.first_frame), scene.time(obj.last_frame)]


def _direction(obj: SceneObject) -> str:
    dx = obj.end_xy[0] - obj.start_xy[0]
    dy = obj.end_xy[1] - obj.start_xy[1]
    horiz = "from the left to the right" if dx > 0 else "from the right to the left"
    if abs(dy) > abs(dx):
        return "from the top to the bottom" if dy > 0 else "from the bottom to the top"
    return horiz


def _mid(obj: SceneObject) -> int:
    return (obj.first_frame + obj.last_frame) // 2


def _options(rng: np.random.Generator, correct: str, distractors: list[str]):
    """Four shuffled options (correct one included) and the letter of the correct one."""
    picks = [correct] + list(distractors[:3])
    order = rng.permutation(len(picks))
    opts = [picks[i] for i in order]
    letter = LETTERS[opts.index(correct)]
    text = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(opts))
    return text, letter


def video_records(scene: Scene, boxes, rng: np.random.Generator, *, clip_id: str,
                  video: str, difficulty: int = 0) -> list[dict]:
    """The five video records (one per task type) for a rendered scene. From difficulty 1
    the temporal MCQ asks for the first or (half the time) the last object to appear."""
    objs = list(scene.objects)
    target = objs[int(rng.integers(len(objs)))]
    base = {"video": video, "duration": round(scene.duration, 3),
            "image_size": [scene.width, scene.height]}
    recs = []

    # Spatio-temporal free-form: where does an object go? Evidence: its first, middle, last box.
    recs.append({
        "task": TASKS[0],
        "question": f"Where does the {target.name} move while it is visible?",
        "answer": f"The {target.name} moves {_direction(target)}.",
        **_key(scene, boxes, [target.first_frame, _mid(target), target.last_frame],
               [target.name]),
    })

    # Temporal grounding: the visible window in seconds.
    s, e = _window(scene, target)
    recs.append({
        "task": TASKS[1],
        "question": f"During which time span is the {target.name} visible in the video?",
        "answer": f"[{s}, {e}]",
        **_key(scene, boxes, [target.first_frame, target.last_frame], [target.name]),
    })

    # Temporal MCQ: which object enters first (or last), with its window.
    which = "last" if difficulty and rng.random() < 0.5 else "first"
    first = (min if which == "first" else max)(objs, key=lambda o: o.first_frame)
    absent = [f"{c} {sh}" for c in sorted(COLOURS) for sh in SHAPES
              if f"{c} {sh}" not in {o.name for o in objs}]
    distract = [o.name for o in objs if o is not first]
    distract += list(rng.choice(absent, size=3 - len(distract), replace=False))
    text, letter = _options(rng, first.name, distract)
    s, e = _window(scene, first)
    recs.append({
        "task": TASKS[2],
        "question": f"Which object appears {which} in the video?\n{text}",
        "answer": f"{letter}\n[{s}, {e}]",
        **_key(scene, boxes, [first.first_frame, first.last_frame], [first.name]),
    })

    # General MCQ: how many objects appear. Evidence: each object's middle frame.
    n = len(objs)
    counts = [str(c) for c in range(1, 6) if c != n]
    text, letter = _options(rng, str(n), list(rng.permutation(counts)[:3]))
    recs.append({
        "task": TASKS[3],
        "question": f"How many different objects appear in the video?\n{text}",
        "answer": letter,
        **(_key(scene, boxes, [_mid(o) for o in objs], [o.name for o in objs]) if not difficulty
           # each key frame its own object's box: four objects' boxes on each of four key frames
           # would overflow the sampled frame they land on (max_boxes)
           else _merge([_key(scene, boxes, [_mid(o)], [o.name]) for o in objs])),
    })

    # General free-form: the colour of a named shape.
    recs.append({
        "task": TASKS[4],
        "question": f"What colour is the {target.shape} in the video?",
        "answer": f"The {target.shape} is {target.colour}.",
        **_key(scene, boxes, [_mid(target)], [target.name]),
    })
    for i, r in enumerate(recs):
        r.update(base)
        r["id"] = f"{clip_id}-{i}"
    return recs


def image_record(scene: Scene, boxes, rng: np.random.Generator, *, clip_id: str,
                 image: str, frame: int) -> dict:
    """A visual QA record on one frame: locate a visible shape by its colour.

    The answer is the release's visual-QA grammar, `<obj>NAME</obj><box>[x1,y1,x2,y2]</box>`,
    in pixels of the original image (`image_size`), which `ans_viou` scores.
    """
    visible = [o for o in scene.objects if o.name in boxes[frame]]
    obj = visible[int(rng.integers(len(visible)))]
    x1, y1, x2, y2 = (int(round(v)) for v in boxes[frame][obj.name])
    return {
        "id": f"{clip_id}-img",
        "task": IMAGE_TASK,
        "image": image,
        "question": f"Where is the {obj.colour} {obj.shape} in the image?",
        "answer": f"<obj>{obj.name}</obj><box>[{x1},{y1},{x2},{y2}]</box>",
        "image_size": [scene.width, scene.height],
        "key_frames": [{"idx": 0, "time": 0.0}],
        "key_items": {"0": {obj.name: [_norm_box(boxes[frame][obj.name], scene.width,
                                                 scene.height)]}},
    }
