"""Frame numbers drawn with a built-in 5x7 bitmap digit font, as array ops (no PIL/OpenCV).

Layout contract (tests decode digits with it): scale s = max(1, round(H / 56)), so a digit
is 7s px tall (about H/8, SPEC section 5) and 5s px wide, digits 6s apart (one s gap),
right-aligned and bottom-aligned with a margin of 2s px from the bottom-right corner.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

RED = (255, 0, 0)

_GLYPHS = {
    0: (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    1: ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    2: (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    3: ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    4: ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    5: ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    6: ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    7: ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    8: (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    9: (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
}
# FONT[d] is the [7, 5] bitmap of digit d.
FONT = np.array([[[c == "#" for c in row] for row in _GLYPHS[d]] for d in range(10)], dtype=bool)
GLYPH_H, GLYPH_W = FONT.shape[1:]


def digit_scale(height: int) -> int:
    """Font scale s: glyphs are 7s px tall, about 1/8 of the frame height."""
    return max(1, round(height / (8 * GLYPH_H)))


def _layout(*, height: int, width: int, max_digits: int):
    """(scale, top, left, strip height, strip width) of the digit strip; static ints."""
    s = digit_scale(height)
    margin = 2 * s
    strip_w = max_digits * GLYPH_W * s + (max_digits - 1) * s
    if strip_w + margin > width or GLYPH_H * s + margin > height:
        raise ValueError(
            f"frame_numbers: {max_digits} digits at scale {s} need {strip_w + margin}x"
            f"{GLYPH_H * s + margin} px, frame is {width}x{height}"
        )
    return s, height - margin - GLYPH_H * s, width - margin - strip_w, GLYPH_H * s, strip_w


def _number_strip(n, *, s: int, max_digits: int):
    """[7s, strip_w] bool: integer `n` (traced scalar) as right-aligned s-times glyphs."""
    n = jnp.clip(jnp.asarray(n, jnp.int32), 0, 10**max_digits - 1)
    powers = jnp.asarray([10 ** (max_digits - 1 - d) for d in range(max_digits)], jnp.int32)
    digits = (n // powers) % 10
    # Leading zeros are not drawn; the last digit always is (so 0 shows as "0").
    visible = (n >= powers) | (jnp.arange(max_digits) == max_digits - 1)
    glyphs = jnp.asarray(FONT)[digits] & visible[:, None, None]  # [D, 7, 5]
    glyphs = jnp.repeat(jnp.repeat(glyphs, s, axis=1), s, axis=2)  # [D, 7s, 5s]
    gap = jnp.zeros((max_digits, GLYPH_H * s, s), bool)
    strip = jnp.concatenate([glyphs, gap], axis=2)  # [D, 7s, 6s]
    return strip.transpose(1, 0, 2).reshape(GLYPH_H * s, -1)[:, : max_digits * 6 * s - s]


def frame_numbers(frames_TxHxWx3, numbers_T, *, max_digits: int = 3, color=RED):
    """Draw numbers_T[t] in `color` digits at the bottom-right of frame t (every frame).

    Numbers are clipped to [0, 10**max_digits - 1]; shapes are static, so the whole op is
    jittable and vmappable (e.g. over a batch of clips). The strip's place is static, so
    only that [T, 7s, strip_w] block is computed and written back into the frames.
    """
    t, h, w, _ = frames_TxHxWx3.shape
    numbers_T = jnp.asarray(numbers_T)
    if numbers_T.shape != (t,):
        raise ValueError(f"frame_numbers: numbers must have shape ({t},), got {numbers_T.shape}")
    s, top, left, sh, sw = _layout(height=h, width=w, max_digits=max_digits)
    strips = jax.vmap(lambda n: _number_strip(n, s=s, max_digits=max_digits))(numbers_T)
    paint = jnp.asarray(color, frames_TxHxWx3.dtype)
    block = frames_TxHxWx3[:, top : top + sh, left : left + sw]
    block = jnp.where(strips[..., None], paint, block)
    return frames_TxHxWx3.at[:, top : top + sh, left : left + sw].set(block)
