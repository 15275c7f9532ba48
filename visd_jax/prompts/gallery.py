"""The five prompt kinds side by side on real frames, as one PNG (for the README).

    python -m visd_jax.prompts.gallery --video PATH --out FILE.png \
        [--box 0.3,0.2,0.6,0.9 ...] [--columns 4]

Rows: raw, circle, darken, numbers, attention; columns: evenly spaced sampled frames.
--box takes normalised [x1, y1, x2, y2] (STGR convention), scaled to the model frame.
Pillow is used here only to write the PNG and the row labels, never for the prompts.
"""
from __future__ import annotations

import argparse

import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from visd_jax.prompts.hints import KINDS
from visd_jax.prompts.ops import apply
from visd_jax.video import load_video


def render(frames_TxHxWx3, boxes_Kx4, numbers_T, *, gap: int = 6, label_w: int = 84) -> Image.Image:
    """A grid image: one row per prompt kind, one column per frame."""
    t, h, w, _ = frames_TxHxWx3.shape
    frames = jnp.asarray(frames_TxHxWx3)
    rows = [
        np.asarray(apply(k, frames, boxes=boxes_Kx4, numbers=numbers_T))
        for k in KINDS
    ]
    canvas = np.full(
        (len(rows) * (h + gap) + gap, label_w + t * (w + gap) + gap, 3), 255, np.uint8
    )
    for r, row in enumerate(rows):
        for c in range(t):
            y, x = gap + r * (h + gap), label_w + gap + c * (w + gap)
            canvas[y : y + h, x : x + w] = row[c]
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for r, kind in enumerate(KINDS):
        draw.text((8, gap + r * (h + gap) + h // 2 - 6), kind, fill=(0, 0, 0))
    return img


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--box", action="append", default=None, help="x1,y1,x2,y2 in 0..1")
    ap.add_argument("--columns", type=int, default=4)
    args = ap.parse_args(argv)
    clip = load_video(args.video)
    _, h, w, _ = clip.frames.shape
    norm = [tuple(map(float, b.split(","))) for b in (args.box or ["0.30,0.15,0.62,0.95"])]
    for b in norm:
        if len(b) != 4:
            ap.error(f"--box needs four numbers x1,y1,x2,y2, got {b}")
    boxes = np.array(norm, np.float32) * np.array([w, h, w, h], np.float32)
    pick = np.round(np.linspace(0, len(clip.frames) - 1, args.columns)).astype(int)
    img = render(clip.frames[pick], jnp.asarray(boxes), jnp.asarray(clip.indices[pick]))
    img.save(args.out)
    print(f"wrote {args.out}: {img.size[0]}x{img.size[1]}, frames {pick.tolist()} of {args.video}")


if __name__ == "__main__":
    main()
