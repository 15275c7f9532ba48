"""Visual prompts of VisionCoach (SPEC section 5) as pure, jittable, vmappable array ops.

Conventions shared by every op:
- frames_TxHxWx3: uint8 (result rounded to nearest and clipped) or float (no rounding).
- boxes: pixel [x1, y1, x2, y2] of the frame the op draws on, shape [T, K, 4] (per-frame
  key objects) or [K, 4] (same boxes on every frame), padded to a fixed K.
- box_mask: [T, K] or [K] bool, True for real boxes (None: all real). Boxes are clipped
  to the frame; a box with no area left after clipping counts as padding.
- frame_mask: [T] bool, the key frames the prompt is applied to (None: every frame).
- A pixel (row i, column j) is the unit square [j, j+1) x [i, i+1); it is "in" a region
  when its centre (j + 0.5, i + 0.5) is.
All shapes are static (K, T, H, W), so the ops jit once and vmap over a batch of clips.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from visd_jax.prompts.font import RED, frame_numbers
from visd_jax.prompts.hints import KINDS
from visd_jax.prompts.raster import any_outer, materialise, per_channel, scale_uint8


def _prepare(frames, boxes, box_mask, frame_mask):
    """Broadcast boxes/masks to [T, K, 4], [T, K], [T]; clip boxes; drop empty ones."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got shape {frames.shape}")
    t, h, w, _ = frames.shape
    boxes = jnp.asarray(boxes, jnp.float32)
    if boxes.ndim == 2:
        boxes = jnp.broadcast_to(boxes, (t,) + boxes.shape)
    if boxes.ndim != 3 or boxes.shape[0] != t or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must be [K, 4] or [{t}, K, 4], got shape {boxes.shape}")
    k = boxes.shape[1]
    if box_mask is None:
        box_mask = jnp.ones((t, k), bool)
    box_mask = jnp.asarray(box_mask, bool)
    if box_mask.ndim == 1:
        box_mask = jnp.broadcast_to(box_mask, (t, k))
    if box_mask.shape != (t, k):
        raise ValueError(f"box_mask must be [{k}] or [{t}, {k}], got shape {box_mask.shape}")
    if frame_mask is None:
        frame_mask = jnp.ones((t,), bool)
    frame_mask = jnp.asarray(frame_mask, bool)
    if frame_mask.shape != (t,):
        raise ValueError(f"frame_mask must be [{t}], got shape {frame_mask.shape}")
    lim = jnp.asarray([w, h, w, h], jnp.float32)
    boxes = jnp.clip(boxes, 0.0, lim)
    valid = box_mask & (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
    return boxes, valid, frame_mask


def _finish(out_f32, frames):
    """Back to the input dtype: integers are rounded to nearest and clipped."""
    if jnp.issubdtype(frames.dtype, jnp.integer):
        info = jnp.iinfo(frames.dtype)
        rounded = jnp.round(out_f32)
        if frames.dtype.itemsize <= 2:  # same values; int32 clip vectorises better on CPU
            return jnp.clip(rounded.astype(jnp.int32), info.min, info.max).astype(frames.dtype)
        return jnp.clip(rounded, info.min, info.max).astype(frames.dtype)
    return out_f32.astype(frames.dtype)


def _axes(height, width):
    """Pixel-centre coordinates of the rows [H] and columns [W]."""
    ys = jnp.arange(height, dtype=jnp.float32) + 0.5
    xs = jnp.arange(width, dtype=jnp.float32) + 0.5
    return ys, xs


def _box_axes(boxes_Nx4, valid_N, *, height: int, width: int, pad):
    """Separable box test: inside box n = rows[n, i] & cols[n, j] ([..., H], [..., W])."""
    ys, xs = _axes(height, width)
    x1, y1, x2, y2 = (boxes_Nx4[..., i, None] for i in range(4))
    rows = (ys >= y1 - pad) & (ys <= y2 + pad) & valid_N[..., None]
    cols = (xs >= x1 - pad) & (xs <= x2 + pad)
    return rows, cols


def box_union_mask(boxes_Kx4, valid_K, *, height: int, width: int, pad: float = 0.0):
    """[H, W] bool: pixel centres inside any valid box grown by `pad` px on every side."""
    rows, cols = _box_axes(boxes_Kx4, valid_K, height=height, width=width, pad=pad)
    return any_outer((rows[None],), (cols[None],), jnp.logical_and)[0]


def darken(frames, boxes, *, box_mask=None, frame_mask=None, pad: float = 10, factor: float = 0.3):
    """On key frames, pixels outside the union of boxes (each grown by `pad` px) times `factor`.

    out = x                    inside the padded union, or on a frame with frame_mask False
    out = x * factor           elsewhere (VisionCoach: pad 10 px, factor 0.3).
    A key frame with no valid box is darkened everywhere. uint8: round(x * factor) of the
    float32 product, round half to even (`raster.scale_uint8`).
    """
    boxes, valid, frame_mask = _prepare(frames, boxes, box_mask, frame_mask)
    t, h, w, c = frames.shape
    rows, cols = _box_axes(boxes, valid, height=h, width=w, pad=pad)
    # A frame that is not a key frame is kept whole: one more "box" covering it.
    off = ~frame_mask[:, None, None]
    rows = jnp.concatenate([rows, jnp.broadcast_to(off, (t, 1, h))], axis=1)
    cols = jnp.concatenate([cols, jnp.broadcast_to(off, (t, 1, w))], axis=1)
    # Here jnp.repeat behind the uint8 identity barrier measured fastest (see materialise).
    rows, cols = materialise(rows), materialise(jnp.repeat(cols, c, axis=-1))
    # The mask is built on the [T, H, W * C] view; the select reads the frames in their own
    # shape, so that a donated frames buffer is written in place (a view of the parameter
    # inside the fusion makes XLA write a new buffer and copy it over: a second pass).
    keep = any_outer((rows,), (cols,), jnp.logical_and).reshape(frames.shape)
    if frames.dtype == jnp.uint8:
        return jnp.where(keep, frames, scale_uint8(frames, factor))
    xf = frames.astype(jnp.float32)
    return _finish(jnp.where(keep, xf, xf * jnp.float32(factor)), frames)


def default_thickness(height: int, width: int) -> int:
    """Ring thickness in px: max(2, round(min(H, W) / 64)), e.g. 4 px at 224x420."""
    return max(2, round(min(height, width) / 64))


def _ring_axes(boxes_Nx4, valid_N, *, height: int, width: int, thickness):
    """Separable ellipse ring: ([..., H] row terms, [..., W] column terms) for `_on_ring`.

    Each ellipse equation (dx / A)^2 + (dy / B)^2 splits into a column term and a row term;
    invalid boxes get an infinite outer term (never drawn), thin rings an infinite inner one.
    """
    ys, xs = _axes(height, width)
    x1, y1, x2, y2 = (boxes_Nx4[..., i, None] for i in range(4))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    a, b = math.sqrt(2) * (x2 - x1) / 2, math.sqrt(2) * (y2 - y1) / 2
    half = thickness / 2
    dx, dy = xs - cx, ys - cy
    ox, oy = (dx / (a + half)) ** 2, (dy / (b + half)) ** 2
    ai, bi = jnp.maximum(a - half, 1e-6), jnp.maximum(b - half, 1e-6)
    ix, iy = (dx / ai) ** 2, (dy / bi) ** 2
    inf = jnp.float32(jnp.inf)
    ox = jnp.where(valid_N[..., None], ox, inf)
    ix = jnp.where((a > half) & (b > half), ix, inf)
    return (oy, iy), (ox, ix)


def _on_ring(oy, iy, ox, ix):
    """Inside the outer ellipse and not strictly inside the inner one."""
    return (ox + oy <= 1.0) & ~(ix + iy < 1.0)


def ellipse_ring_mask(boxes_Kx4, valid_K, *, height: int, width: int, thickness: float):
    """[H, W] bool: the ring of the ellipse circumscribing each valid box.

    Ellipse through the box corners with the box's aspect: centre c = box centre, semi-axes
    a = sqrt(2) * (x2 - x1) / 2, b = sqrt(2) * (y2 - y1) / 2. Ring = inside the ellipse
    with semi-axes (a + t/2, b + t/2) and not strictly inside (a - t/2, b - t/2).
    """
    rows, cols = _ring_axes(boxes_Kx4, valid_K, height=height, width=width, thickness=thickness)
    return any_outer(
        tuple(r[None] for r in rows), tuple(c[None] for c in cols), _on_ring
    )[0]


def red_circle(frames, boxes, *, box_mask=None, frame_mask=None, thickness=None, color=RED):
    """On key frames, a red (255, 0, 0) ellipse ring around each box (`ellipse_ring_mask`).

    thickness: ring width in px; None = `default_thickness(H, W)` (scales with frame size).
    """
    boxes, valid, frame_mask = _prepare(frames, boxes, box_mask, frame_mask)
    _, h, w, _ = frames.shape
    t_px = default_thickness(h, w) if thickness is None else thickness
    valid = valid & frame_mask[:, None]
    rows, cols = _ring_axes(boxes, valid, height=h, width=w, thickness=t_px)
    c = frames.shape[-1]
    cols = tuple(per_channel(v, c) for v in cols)
    ring = any_outer(rows, cols, _on_ring).reshape(frames.shape)  # built on [T, H, W * C]
    # Selecting on the frames' own shape keeps a donated buffer in place (see darken).
    return jnp.where(ring, jnp.asarray(color, frames.dtype), frames)


def smooth_normalise(saliency_hxw):
    """3x3 mean (edges replicated), then (s - min) / (max - min); a flat map becomes all ones."""
    s = jnp.pad(saliency_hxw.astype(jnp.float32), 1, mode="edge")
    h, w = saliency_hxw.shape
    s = sum(s[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0
    lo, hi = s.min(), s.max()
    span = hi - lo
    return jnp.where(span > 0, (s - lo) / jnp.where(span > 0, span, 1.0), 1.0)


def attention(frames, saliency, *, frame_mask=None, gray: float = 0.0):
    """On key frames, out = I * M + (1 - M) * gray with M = smooth_normalise(saliency).

    saliency: [T, h, w] (or [h, w] / [1, h, w] for every frame) with H % h == 0 and W % w == 0, e.g. the
    14- or 28-px patch grid; M is repeated up to the frame (nearest). gray in pixel units.
    """
    _, _, frame_mask = _prepare(frames, jnp.zeros((0, 4)), None, frame_mask)
    t, h, w, _ = frames.shape
    saliency = jnp.asarray(saliency)
    if saliency.ndim == 2:
        saliency = saliency[None]
    if saliency.ndim == 3 and saliency.shape[0] == 1:
        saliency = jnp.broadcast_to(saliency, (t,) + saliency.shape[1:])
    if saliency.ndim != 3 or saliency.shape[0] != t:
        raise ValueError(f"saliency must be [h, w] or [{t}, h, w], got shape {saliency.shape}")
    sh, sw = saliency.shape[1:]
    if h % sh or w % sw:
        raise ValueError(f"saliency grid {sh}x{sw} must divide the frame size {h}x{w}")
    m = jax.vmap(smooth_normalise)(saliency)
    m = jnp.where(frame_mask[:, None, None], m, 1.0)  # [T, sh, sw]
    ry, rx = h // sh, w // sw
    # Blend terms stay on the saliency grid; only their column repeat ([T, sh, W * C]) is
    # materialised, broadcast over the ry rows of each grid row. The frames are read in
    # their own shape so that a donated buffer is written in place (see darken).
    c = frames.shape[-1]
    m_cols = jnp.stack([m] * (rx * c), axis=-1).reshape(t, sh, 1, w * c)
    m_full = jnp.broadcast_to(m_cols, (t, sh, ry, w * c)).reshape(frames.shape)
    out = frames.astype(jnp.float32) * m_full
    if not (isinstance(gray, (int, float)) and gray == 0):  # x * m + 0 == x * m exactly
        out = out + (1.0 - m_full) * jnp.float32(gray)
    return _finish(out, frames)


def saliency_from_boxes(boxes, *, box_mask=None, height: int, width: int, cell: int = 14):
    """Fallback saliency (SPEC section 5): [T, H/cell, W/cell], per cell the largest fraction
    of its area covered by one valid box. boxes/box_mask as for the ops ([T, K, 4] or [K, 4]).
    """
    if height % cell or width % cell:
        raise ValueError(f"saliency_from_boxes: cell {cell} must divide {height}x{width}")
    boxes = jnp.asarray(boxes, jnp.float32)
    t = boxes.shape[0] if boxes.ndim == 3 else 1
    dummy = jnp.zeros((t, height, width, 3), jnp.uint8)
    boxes, valid, _ = _prepare(dummy, boxes, box_mask, None)
    c0y = jnp.arange(0, height, cell, dtype=jnp.float32)
    c0x = jnp.arange(0, width, cell, dtype=jnp.float32)
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))  # [T, K]
    ov_y = jnp.clip(jnp.minimum(y2[..., None], c0y + cell) - jnp.maximum(y1[..., None], c0y), 0)
    ov_x = jnp.clip(jnp.minimum(x2[..., None], c0x + cell) - jnp.maximum(x1[..., None], c0x), 0)
    cov = ov_y[..., :, None] * ov_x[..., None, :] / float(cell * cell)  # [T, K, gh, gw]
    return jnp.max(jnp.where(valid[..., None, None], cov, 0.0), axis=1, initial=0.0)


def apply(
    kind,
    frames,
    *,
    boxes=None,
    box_mask=None,
    frame_mask=None,
    numbers=None,
    saliency=None,
):
    """Apply prompt `kind` in raw | circle | darken | numbers | attention.

    kind: a string (Python dispatch) or an int index into KINDS, possibly traced (e.g. the
    VP-Selector's per-example choice under vmap; then all five branches are traced and
    `boxes`, `numbers` are required). numbers default to arange(T); saliency defaults to
    `saliency_from_boxes` on the 14-px patch grid.
    """
    t, h, w, _ = frames.shape

    def need(name, value):
        if value is None:
            raise ValueError(f"apply({kind!r}): `{name}` is required for this prompt")
        return value

    def numbers_or_default():
        return jnp.arange(t) if numbers is None else numbers

    def saliency_or_default():
        if saliency is not None:
            return saliency
        return saliency_from_boxes(need("boxes", boxes), box_mask=box_mask, height=h, width=w)

    branches = {
        "raw": lambda: frames,
        "circle": lambda: red_circle(frames, need("boxes", boxes), box_mask=box_mask, frame_mask=frame_mask),
        "darken": lambda: darken(frames, need("boxes", boxes), box_mask=box_mask, frame_mask=frame_mask),
        "numbers": lambda: frame_numbers(frames, numbers_or_default()),
        "attention": lambda: attention(frames, saliency_or_default(), frame_mask=frame_mask),
    }
    if isinstance(kind, str):
        if kind not in branches:
            raise ValueError(f"apply: unknown prompt kind {kind!r}; expected one of {KINDS}")
        return branches[kind]()
    fns = [lambda _, f=branches[k]: f() for k in KINDS]
    return jax.lax.switch(jnp.asarray(kind, jnp.int32), fns, None)
