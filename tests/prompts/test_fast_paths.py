"""The fast paths of the prompt ops: exact uint8 scaling, separable masks, many boxes, edges.

References are NumPy, written here: the uint8 darken formula is the float32 product
round(float32(x) * float32(factor)) (round half to even), checked on all 256 inputs.
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visd_jax.prompts import attention, box_union_mask, darken, ellipse_ring_mask, frame_numbers, red_circle
from visd_jax.prompts.raster import UNROLL_K, scale_uint8

FACTORS = [0.3, 0.0, 1.0, 0.5, 0.25, 0.1, 0.7, 1 / 3, 0.999, 0.001, 1.5, -0.2]


def _ref_scale(x_uint8, factor):
    prod = x_uint8.astype(np.float32) * np.float32(factor)
    return np.clip(np.round(prod), 0, 255).astype(np.uint8)


def _all_values(h=16, w=16):
    """A [1, h, w, 3] uint8 frame holding every value 0..255 in each channel."""
    v = np.arange(h * w * 3) % 256
    return v.reshape(1, h, w, 3).astype(np.uint8)


@pytest.mark.parametrize("factor", FACTORS)
def test_scale_uint8_exhaustive(factor):
    x = np.arange(256, dtype=np.uint8)
    want = _ref_scale(x, factor)
    np.testing.assert_array_equal(np.asarray(scale_uint8(jnp.asarray(x), factor)), want)
    traced = jax.jit(lambda v, f: scale_uint8(v, f))(jnp.asarray(x), factor)
    np.testing.assert_array_equal(np.asarray(traced), want)
    # A static factor fused under jit, on an array long enough for the vectorised loop
    # and an odd remainder: where the compiler could contract multiply and add into an FMA.
    many = jnp.tile(jnp.asarray(x), 4099)
    fused = jax.jit(lambda v: scale_uint8(v, factor))(many)
    np.testing.assert_array_equal(np.asarray(fused).reshape(4099, 256), np.tile(want, (4099, 1)))


@pytest.mark.parametrize("factor", [0.3, 1 / 3, 1.5])
def test_darken_uint8_all_values(factor):
    frames = _all_values()
    empty = np.zeros((1, 4), np.float32)  # no valid box: the whole frame is darkened
    out = jax.jit(lambda f: darken(f, empty, factor=factor))(frames)
    np.testing.assert_array_equal(np.asarray(out), _ref_scale(frames, factor))


def _ref_union(boxes, h, w, pad):
    yc, xc = np.mgrid[0:h, 0:w] + 0.5
    keep = np.zeros((h, w), bool)
    for x1, y1, x2, y2 in np.clip(boxes.astype(np.float64), 0, [w, h, w, h]):
        if x2 > x1 and y2 > y1:
            keep |= (xc >= x1 - pad) & (xc <= x2 + pad) & (yc >= y1 - pad) & (yc <= y2 + pad)
    return keep


def _edge_boxes(h, w, k):
    """k boxes: frame-filling, hanging over each edge and corner, slivers, and random ones."""
    fixed = [
        [0, 0, w, h], [-5, -5, 3.25, 4.5], [w - 3.5, h - 2, w + 9, h + 9], [-2, 10, 6, 20],
        [w - 1, 0, w + 1, h], [10, h - 0.75, 20, h + 3], [7.5, 7.5, 7.75, 30],
    ]
    rng = np.random.default_rng(3)
    extra = rng.uniform(-10, max(h, w) + 10, (max(0, k - len(fixed)), 4)).round(2)
    lo, hi = np.minimum(extra[:, :2], extra[:, 2:]), np.maximum(extra[:, :2], extra[:, 2:])
    extra = np.concatenate([lo, hi], axis=1)
    return np.concatenate([np.array(fixed, np.float64), extra])[:k].astype(np.float32)


@pytest.mark.parametrize("k", [1, 3, UNROLL_K + 4])  # unrolled and reduced paths
def test_darken_edges_and_many_boxes(k):
    h, w = 40, 52
    boxes = _edge_boxes(h, w, k)
    rng = np.random.default_rng(k)
    frames = rng.integers(0, 256, (2, h, w, 3)).astype(np.uint8)
    box_mask = np.ones((2, k), bool)
    box_mask[1, ::2] = False
    op = jax.jit(lambda f: darken(f, boxes, box_mask=box_mask, pad=2, factor=0.3))
    out = np.asarray(op(frames))
    for t in range(2):
        keep = _ref_union(boxes[box_mask[t]], h, w, 2)
        np.testing.assert_array_equal(out[t][keep], frames[t][keep])
        np.testing.assert_array_equal(out[t][~keep], _ref_scale(frames[t][~keep], 0.3))
    # the public [H, W] helper agrees with the same reference
    got = box_union_mask(jnp.asarray(boxes), jnp.ones(k, bool), height=h, width=w, pad=2.0)
    got = np.asarray(got)
    np.testing.assert_array_equal(got, _ref_union(boxes, h, w, 2))


def _ref_ring(boxes, h, w, thick):
    """float64 ring and the float32 boundary sliver left out of the comparison."""
    yc, xc = np.mgrid[0:h, 0:w] + 0.5
    ring = np.zeros((h, w), bool)
    sliver = np.zeros((h, w), bool)
    for x1, y1, x2, y2 in np.clip(boxes.astype(np.float64), 0, [w, h, w, h]):
        if x2 <= x1 or y2 <= y1:
            continue
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        a, b = (x2 - x1) / np.sqrt(2), (y2 - y1) / np.sqrt(2)
        r_out = ((xc - cx) / (a + thick / 2)) ** 2 + ((yc - cy) / (b + thick / 2)) ** 2
        r_in = np.full((h, w), np.inf)
        if a > thick / 2 and b > thick / 2:
            r_in = ((xc - cx) / (a - thick / 2)) ** 2 + ((yc - cy) / (b - thick / 2)) ** 2
        ring |= (r_out <= 1) & (r_in >= 1)
        sliver |= (np.abs(r_out - 1) < 1e-5) | (np.abs(r_in - 1) < 1e-5)
    return ring, sliver


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("k", [2, UNROLL_K + 3])
def test_red_circle_edges_and_many_boxes(k, dtype):
    h, w = 48, 64
    boxes = _edge_boxes(h, w, k)
    frames = np.random.default_rng(k).integers(0, 200, (2, h, w, 3)).astype(dtype)
    frame_mask = np.array([True, False])
    op = jax.jit(lambda f: red_circle(f, boxes, frame_mask=frame_mask, thickness=3))
    out = np.asarray(op(frames))
    np.testing.assert_array_equal(out[1], frames[1])
    ring, sliver = _ref_ring(boxes, h, w, 3.0)
    changed = np.any(out[0] != frames[0], axis=-1)
    np.testing.assert_array_equal(changed[~sliver], ring[~sliver])
    assert np.all(out[0][changed] == [255, 0, 0])
    clipped = jnp.asarray(np.clip(boxes, 0, [w, h, w, h]), jnp.float32)  # as the op clips
    got = ellipse_ring_mask(clipped, jnp.ones(k, bool), height=h, width=w, thickness=3.0)
    got = np.asarray(got)
    np.testing.assert_array_equal(got[~sliver], ring[~sliver])


def test_attention_uint8_gray_and_frame_mask():
    t, h, w = 3, 28, 42
    frames = np.random.default_rng(5).integers(0, 256, (t, h, w, 3)).astype(np.uint8)
    sal = np.random.default_rng(6).random((t, 2, 3)).astype(np.float32)
    fm = np.array([True, False, True])
    out = np.asarray(jax.jit(lambda f: attention(f, sal, frame_mask=fm, gray=40.0))(frames))
    np.testing.assert_array_equal(out[1], frames[1])
    for i in (0, 2):
        s = np.pad(sal[i].astype(np.float64), 1, mode="edge")
        sm = np.lib.stride_tricks.sliding_window_view(s, (3, 3)).mean(axis=(-2, -1))
        m = (sm - sm.min()) / (sm.max() - sm.min())
        m = np.kron(m, np.ones((h // 2, w // 3)))[..., None]
        ref = frames[i] * m + (1 - m) * 40.0
        assert np.abs(out[i] - ref).max() <= 0.5 + 1e-3


_T, _H, _W = 4, 56, 84
_OP_ARGS = {  # the op and its second argument (boxes, numbers or saliency)
    "darken": (darken, np.asarray([[8.0, 8.0, 40.0, 30.0]], np.float32)),
    "red_circle": (red_circle, np.asarray([[8.0, 8.0, 40.0, 30.0]], np.float32)),
    "frame_numbers": (frame_numbers, np.arange(_T)),
    "attention": (attention, np.ones((_T, _H // 14, _W // 14), np.float32)),
}


@pytest.mark.parametrize("op", list(_OP_ARGS))
def test_donated_frames_are_written_in_place(op):
    """With the frames buffer donated, the compiled op writes its result over it: no
    frame-sized copy (a pipeline that owns its decoded frames pays one pass, not two)."""
    fn, arg = _OP_ARGS[op]
    frames = jnp.zeros((_T, _H, _W, 3), jnp.uint8)
    hlo = jax.jit(fn, donate_argnums=0).lower(frames, jnp.asarray(arg)).compile().as_text()
    entry = hlo[hlo.index("ENTRY"):]
    frame_ops = re.findall(rf"u8\[{_T},{_H},{_W},3\]\{{[^}}]*\}} ([\w-]+)\(", entry)
    assert frame_ops and "copy" not in frame_ops, frame_ops
    assert re.search(r"input_output_alias=\{ \{\}: \(0, \{\}", hlo), "frames are not aliased to the output"
