"""The released STGR-RL / STGR-SFT records (VisionCoach, Open-o3 Video) as our records.

The releases name media `video_path` / `image_path` relative to a root that their trainer
picks from the record's `source` (exact names such as "gqa" or "timerft", substrings such
as "STR", "STR_plm", "TVG", "videor1"); key frames carry a `path` to a key-frame image
under a second root. Their JSON went through `datasets.Dataset.from_json`, which fills
fields a row lacks with None: the trainer deletes None entries of `key_items` (and None
object lists inside a frame's dict) and we drop None-valued top-level fields too, so
None means absent everywhere. Visual-QA `key_items` come as `{name: boxes}` for the one
image: they become frame "0", boxes given in pixels divided by `image_size`.

Our own field names (`video`, `image`, frame-indexed `key_items`) keep working: a record
without the release's fields passes through unchanged.
"""
from __future__ import annotations

import os
import pathlib

from visd_jax.roots import Roots, parse_roots, root_for

__all__ = ["Roots", "missing_files", "normalize", "parse_roots", "root_for"]


def _drop_none(items):
    if not isinstance(items, dict):
        return items
    out = {}
    for frame, objs in items.items():
        if objs is None:
            continue
        out[frame] = {k: v for k, v in objs.items() if v is not None} if isinstance(objs, dict) else objs
    return out


def _image_items(items: dict, image_size) -> dict:
    """`{name: boxes}` of one image -> `{"0": {name: boxes}}`, boxes normalised to [0, 1]."""
    if not items or all(isinstance(k, str) and k.lstrip("-").isdigit() for k in items):
        return items
    flat = [v for boxes in items.values() if isinstance(boxes, list) for b in boxes
            if isinstance(b, list) for v in b if isinstance(v, (int, float))]
    pixels = any(v > 1 for v in flat)
    if pixels and isinstance(image_size, list) and len(image_size) == 2 and min(image_size) > 0:
        w, h = image_size
        items = {name: [[b[0] / w, b[1] / h, b[2] / w, b[3] / h] if isinstance(b, list) and len(b) == 4 else b
                        for b in boxes] if isinstance(boxes, list) else boxes
                 for name, boxes in items.items()}
    # pixel boxes without an image_size stay as they are: the schema check names them
    return {"0": items}


def normalize(rec, *, media_roots: Roots = (), keyframe_roots: Roots = ()):
    """A release record in our schema (a new dict); anything else is returned as it is.

    Media paths become `video` / `image` joined to the root of the record's `source`, key
    frames keep `time` and `idx` and get an absolute `path` under the key-frame root."""
    if not isinstance(rec, dict):
        return rec
    rec = {k: v for k, v in rec.items() if v is not None}
    if "key_items" in rec:
        rec["key_items"] = _drop_none(rec["key_items"])
        if rec.get("task") == "visual QA" and isinstance(rec["key_items"], dict):
            rec["key_items"] = _image_items(rec["key_items"], rec.get("image_size"))
    for ours, theirs in (("video", "video_path"), ("image", "image_path")):
        if ours not in rec and isinstance(rec.get(theirs), str):
            root = root_for(rec.get("source"), media_roots)
            rec[ours] = os.path.join(root, rec[theirs]) if root else rec[theirs]
    kfs = rec.get("key_frames")
    if isinstance(kfs, list):
        root = root_for(rec.get("source"), keyframe_roots)
        rec["key_frames"] = [
            {**kf, "path": os.path.join(root, kf["path"]) if root else kf["path"]}
            if isinstance(kf, dict) and isinstance(kf.get("path"), str) else kf for kf in kfs]
    return rec


def missing_files(rec: dict, base: pathlib.Path) -> list[str]:
    """Media and key-frame image paths of a normalised record that do not exist."""
    paths = [rec.get("image") if rec.get("task") == "visual QA" else rec.get("video")]
    paths += [kf.get("path") for kf in rec.get("key_frames", []) if isinstance(kf, dict)]
    return [p for p in paths if isinstance(p, str) and not (base / p).exists()]
