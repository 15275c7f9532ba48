"""The synthetic set's clips as V-STaR annotations: the what-when-where chain of one object.

`write(dataset)` writes `<set>/vstar.json` in V-STaR's own format (the benchmark's
`V_STaR_test.json` fields: vid, domain, fps, width, height, frame_count, question, answer,
temporal_question, timestamps, spatial_question, spatial_question_2, bboxes with
timestamp / frame_index / xmin..ymax in video pixels), one item per clip, next to the
clips it asks about (`<set>/videos/<vid>.mp4`). Gold comes from the scene geometry, like
the set's STGR records: the object's visible window and its tight box at each whole second.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import tempfile

import numpy as np

from data import synth

FILE = "vstar.json"


def annotation(scene, boxes, rng: np.random.Generator, *, vid: str) -> dict:
    """The V-STaR item of a rendered scene: one object's colour, window and boxes."""
    target = scene.objects[int(rng.integers(len(scene.objects)))]
    start, end = scene.time(target.first_frame), scene.time(target.last_frame)
    bboxes = []
    for s in range(math.ceil(start), math.floor(end) + 1):
        k = int(round(s * scene.fps))
        box = boxes[k].get(target.name) if k < len(boxes) else None
        if box is not None:
            x1, y1, x2, y2 = box
            bboxes.append({"timestamp": s, "frame_index": k, "xmin": x1, "ymin": y1, "xmax": x2, "ymax": y2})
    return {
        "vid": vid, "domain": "synthetic", "fps": scene.fps, "width": scene.width, "height": scene.height,
        "frame_count": scene.num_frames,
        "question": f"What colour is the {target.shape} in the video?",
        "answer": f"The {target.shape} is {target.colour}.",
        "object": target.name,
        "temporal_question": f"When is the {target.name} visible in the video?",
        "timestamps": [start, end],
        "spatial_question": f"Where is the {target.name} during this time?",
        "spatial_question_2": f"Where is the {target.name} in the video?",
        "bboxes": bboxes,
    }


def write(ds: synth.SynthDataset) -> pathlib.Path:
    """`<set>/vstar.json` for a synthetic set (built once; concurrent callers see all or none)."""
    path = ds.root / FILE
    if path.exists():
        return path
    items = []
    for i in range(ds.config.num_clips):
        scene, _, boxes, _, _ = synth.make_clip(ds.config, i)
        item = annotation(scene, boxes, np.random.default_rng([ds.config.seed, i, 7]), vid=f"clip_{i:04d}")
        if item["bboxes"]:  # a window shorter than a whole second has no box to ask about
            items.append(item)
    fd, tmp = tempfile.mkstemp(prefix=".vstar-", dir=ds.root)
    with os.fdopen(fd, "w") as f:
        json.dump(items, f, indent=1)
    os.replace(tmp, path)
    return path
