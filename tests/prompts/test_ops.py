"""Pixel-level tests of darken, red_circle and attention, eager, under jit and under vmap.

References are NumPy float64, written here from SPEC section 5 and the ops' documented
pixel convention (pixel (i, j) has centre (j + 0.5, i + 0.5)).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visd_jax.prompts import (
    KINDS,
    apply,
    attention,
    darken,
    default_thickness,
    red_circle,
    saliency_from_boxes,
)

T, H, W = 3, 56, 84
BOXES = np.array(
    [
        [[10, 8, 30, 20], [50, 30, 70, 50], [0, 0, 5, 5]],
        [[-20, -10, 15, 25], [60, 40, 120, 90], [1, 1, 2, 2]],  # partly outside the frame
        [[40, 10, 44, 50], [0, 0, 0, 0], [200, 200, 300, 300]],  # empty / fully outside
    ],
    np.float32,
)
BOX_MASK = np.array([[1, 1, 0], [1, 1, 0], [1, 1, 1]], bool)
FRAME_MASK = np.array([1, 0, 1], bool)


def _frames(dtype=np.uint8, seed=0):
    x = np.random.default_rng(seed).integers(0, 200, (T, H, W, 3))
    return x.astype(dtype)


def _modes():
    """Eager, jit, and vmap over a batch of two clips (second clip unused)."""
    def eager(fn, *args):
        return np.asarray(fn(*args))

    def jitted(fn, *args):
        return np.asarray(jax.jit(fn)(*args))

    def vmapped(fn, *args):
        batched = [jnp.stack([jnp.asarray(a), jnp.asarray(a)[::-1]]) for a in args]
        return np.asarray(jax.vmap(fn)(*batched))[0]

    return {"eager": eager, "jit": jitted, "vmap": vmapped}


MODES = _modes()


def _ref_inside(box, pad):
    """float64 mask of pixel centres inside the clipped box grown by pad (None if no area)."""
    x1, y1, x2, y2 = np.clip(box.astype(np.float64), 0, [W, H, W, H])
    if x2 <= x1 or y2 <= y1:
        return None
    yc, xc = np.mgrid[0:H, 0:W] + 0.5
    return (xc >= x1 - pad) & (xc <= x2 + pad) & (yc >= y1 - pad) & (yc <= y2 + pad)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_darken(mode, dtype):
    frames = _frames(dtype)
    fn = lambda f, b, bm, fm: darken(f, b, box_mask=bm, frame_mask=fm, pad=3, factor=0.3)
    out = MODES[mode](fn, frames, BOXES, BOX_MASK, FRAME_MASK).astype(np.float64)
    x = frames.astype(np.float64)
    for t in range(T):
        if not FRAME_MASK[t]:
            np.testing.assert_array_equal(out[t], x[t])
            continue
        keep = np.zeros((H, W), bool)
        for k in range(BOXES.shape[1]):
            m = _ref_inside(BOXES[t, k], 3)
            if BOX_MASK[t, k] and m is not None:
                keep |= m
        assert keep.any() and (~keep).any()
        np.testing.assert_array_equal(out[t][keep], x[t][keep])
        # padded boxes (mask False, e.g. frame 0's [0, 0, 5, 5]) are not in `keep`
        if dtype == np.uint8:  # rounded to nearest
            assert np.abs(out[t][~keep] - 0.3 * x[t][~keep]).max() <= 0.5 + 1e-4
        else:
            np.testing.assert_allclose(out[t][~keep], 0.3 * x[t][~keep], rtol=2e-7)


@pytest.mark.parametrize("mode", MODES)
def test_red_circle_pixels_lie_on_ring(mode):
    frames = _frames()
    thick = 3.0
    fn = lambda f, b, bm, fm: red_circle(f, b, box_mask=bm, frame_mask=fm, thickness=thick)
    out = MODES[mode](fn, frames, BOXES, BOX_MASK, FRAME_MASK)
    yc, xc = np.mgrid[0:H, 0:W] + 0.5
    for t in range(T):
        changed = np.any(out[t] != frames[t], axis=-1)
        if not FRAME_MASK[t]:
            assert not changed.any()
            continue
        ring = np.zeros((H, W), bool)
        for k in range(BOXES.shape[1]):
            x1, y1, x2, y2 = np.clip(BOXES[t, k].astype(np.float64), 0, [W, H, W, H])
            if not BOX_MASK[t, k] or x2 <= x1 or y2 <= y1:
                continue
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            a, b = (x2 - x1) / np.sqrt(2), (y2 - y1) / np.sqrt(2)
            r_out = ((xc - cx) / (a + thick / 2)) ** 2 + ((yc - cy) / (b + thick / 2)) ** 2
            if a > thick / 2 and b > thick / 2:
                r_in = ((xc - cx) / (a - thick / 2)) ** 2 + ((yc - cy) / (b - thick / 2)) ** 2
            else:
                r_in = np.full((H, W), np.inf)
            # leave a float32 sliver around the two boundaries out of the comparison
            ring |= (r_out <= 1 - 1e-5) & (r_in >= 1 + 1e-5)
            boundary = (np.abs(r_out - 1) < 1e-5) | (np.abs(r_in - 1) < 1e-5)
            ring[boundary] = changed[boundary]
        np.testing.assert_array_equal(changed, ring)
        assert ring.sum() > 50
        np.testing.assert_array_equal(out[t][ring], np.broadcast_to([255, 0, 0], (ring.sum(), 3)))


def test_default_thickness_scales_with_frame():
    assert default_thickness(224, 420) == 4
    assert default_thickness(448, 840) == 7
    assert default_thickness(56, 84) == 2


def _ref_attention(x, sal, gray):
    """float64: 3x3 mean with replicated edges, min-max normalise, nearest upsample, blend."""
    s = np.pad(sal.astype(np.float64), 1, mode="edge")
    h, w = sal.shape
    windows = np.lib.stride_tricks.sliding_window_view(s, (3, 3))  # [h, w, 3, 3]
    sm = windows.mean(axis=(-2, -1))
    m = (sm - sm.min()) / (sm.max() - sm.min()) if sm.max() > sm.min() else np.ones_like(sm)
    m = np.kron(m, np.ones((H // h, W // w)))[..., None]
    return x * m + (1 - m) * gray


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("grid", [(H, W), (4, 6)])
def test_attention_blend(mode, grid):
    frames = _frames(np.float32)
    sal = np.random.default_rng(1).random((T,) + grid).astype(np.float32)
    sal[2] = 0.7  # flat map: M = 1, frame unchanged
    fn = lambda f, s, fm: attention(f, s, frame_mask=fm, gray=20.0)
    out = MODES[mode](fn, frames, sal, FRAME_MASK)
    for t in range(T):
        ref = _ref_attention(frames[t].astype(np.float64), sal[t], 20.0)
        if not FRAME_MASK[t]:
            ref = frames[t]
        np.testing.assert_allclose(out[t], ref, rtol=1e-5, atol=255 * 1e-5)
    np.testing.assert_allclose(out[2], frames[2], rtol=1e-6)


def test_attention_uint8_rounds():
    frames = _frames()
    sal = np.random.default_rng(2).random((T, 4, 6)).astype(np.float32)
    out = np.asarray(attention(frames, sal))
    for t in range(T):
        ref = _ref_attention(frames[t].astype(np.float64), sal[t], 0.0)
        assert np.abs(out[t] - ref).max() <= 0.5 + 1e-3


def test_saliency_from_boxes_coverage():
    boxes = np.array([[[0, 0, 14, 7], [20, 14, 34, 28]]], np.float32)
    sal = np.asarray(saliency_from_boxes(boxes, height=28, width=42, cell=14))
    expected = np.array([[0.5, 0.0, 0.0], [0.0, 8 / 14, 6 / 14]])
    np.testing.assert_allclose(sal[0], expected, atol=1e-6)
    masked = np.asarray(
        saliency_from_boxes(boxes, box_mask=np.array([False, True]), height=28, width=42, cell=14)
    )
    assert masked[0, 0, 0] == 0.0


@pytest.mark.slow
def test_apply_dispatch_and_traced_kind():
    frames = jnp.asarray(_frames())
    kw = dict(boxes=BOXES, box_mask=BOX_MASK, frame_mask=FRAME_MASK)
    by_name = {k: np.asarray(apply(k, frames, **kw)) for k in KINDS}
    np.testing.assert_array_equal(by_name["raw"], frames)
    np.testing.assert_array_equal(
        by_name["darken"], np.asarray(darken(frames, BOXES, box_mask=BOX_MASK, frame_mask=FRAME_MASK))
    )
    # per-example kind chosen at run time (the VP-Selector), under jit + vmap
    batch = jnp.stack([frames] * len(KINDS))
    out = jax.jit(jax.vmap(lambda i, f: apply(i, f, **kw)))(jnp.arange(len(KINDS)), batch)
    for i, k in enumerate(KINDS):
        np.testing.assert_array_equal(np.asarray(out[i]), by_name[k])


def test_bad_arguments():
    frames = _frames()
    with pytest.raises(ValueError, match="unknown prompt kind"):
        apply("blur", frames)
    with pytest.raises(ValueError, match="`boxes` is required"):
        apply("circle", frames)
    with pytest.raises(ValueError, match="boxes must be"):
        darken(frames, np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="frame_mask"):
        darken(frames, BOXES, frame_mask=np.ones(5, bool))
    with pytest.raises(ValueError, match="must divide"):
        attention(frames, np.ones((T, 5, 6)))
