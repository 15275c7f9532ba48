"""A synthetic set of videos of many shapes: 3 aspect ratios x 4 lengths, with images.

Real data (the released STGR videos) come in every length and aspect ratio; the default
synthetic set has one. This set is what shape bucketing is tested and measured on:

    ann, root = data.varied.generate("/tmp/visd_varied")
    # --config.data.source=stgr --config.data.annotations=ann --config.data.video_root=root
    # with data.max_pixels=VARIED_MAX_PIXELS, min_frames=4, max_frames=16, fps=2

At 2 fps and 84x84 pixels per frame the clips give 12 distinct video grids: 4, 8, 12 and
16 frames (2, 4, 6, 8 s) of 4x8 (from 16:9), 6x6 (1:1) and 6x4 (2:3) patches, plus one
image per aspect ratio. One question per clip (tasks in turn), so every record is its own shape.
"""
from __future__ import annotations

import json
import os
import pathlib

from data.synth import generate as generate_synth

ASPECTS = ((256, 144), (192, 192), (128, 192))  # width x height: 16:9, 1:1, 2:3
SECONDS = (2.0, 4.0, 6.0, 8.0)
VARIED_MAX_PIXELS = 84 * 84


def generate(cache_dir: str | os.PathLike, *, seed: int = 0) -> tuple[pathlib.Path, pathlib.Path]:
    """(annotations JSONL, video root) of the set, built once under `cache_dir` (cached)."""
    cache = pathlib.Path(cache_dir)
    out = cache / f"varied-{seed}.jsonl"
    if out.exists():
        return out, cache
    lines = []
    for a, (w, h) in enumerate(ASPECTS):
        for s, sec in enumerate(SECONDS):
            ds = generate_synth(cache, seed=seed + 100 * a + s, num_clips=1, width=w, height=h,
                                min_seconds=sec, max_seconds=sec, images=s == 0)
            recs = ds.records()
            videos = [r for r in recs if "video" in r]
            picked = [videos[(a * len(SECONDS) + s) % len(videos)]] + [r for r in recs if "image" in r]
            for r in picked:
                key = "video" if "video" in r else "image"
                r[key] = str((ds.video_root / r[key]).relative_to(cache))
                lines.append(json.dumps(r, sort_keys=True))
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out)  # atomic: a concurrent caller never reads half a file
    return out, cache
