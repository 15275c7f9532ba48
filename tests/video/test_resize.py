"""smart_resize / smart_nframes against transformers and hand-worked cases."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from visd_jax.video import sample_indices, smart_nframes, smart_resize


@pytest.mark.parametrize(
    "hw,expected",
    [
        ((360, 640), (224, 420)),  # the shared clips: 364x644 is over budget, scaled down
        ((224, 420), (224, 420)),  # already on the grid
        ((20, 30), (56, 84)),  # under min_pixels: scaled up with ceil
        ((1000, 1000), (308, 308)),
    ],
)
def test_hand_worked(hw, expected):
    assert smart_resize(*hw, min_pixels=4 * 784, max_pixels=128 * 784) == expected


@settings(max_examples=300, deadline=None)
@given(
    # From 15 px: below, transformers rounds a side to 0 while qwen-vl-utils keeps >= 28.
    st.integers(15, 4000),
    st.integers(15, 4000),
    st.sampled_from([(4 * 784, 128 * 784), (56 * 56, 1280 * 784), (128 * 784, 768 * 784)]),
)
def test_matches_transformers(h, w, budget):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf

    if max(h, w) / min(h, w) > 200:
        return
    lo, hi = budget
    ours = smart_resize(h, w, min_pixels=lo, max_pixels=hi)
    assert ours == tuple(hf(h, w, factor=28, min_pixels=lo, max_pixels=hi))
    assert ours[0] % 28 == 0 and ours[1] % 28 == 0


def test_tiny_side_follows_qwen_vl_utils():
    # qwen-vl-utils: h' = max(28, round(14/28)*28) = 28, w' = 112; 28*112 = 3136 is not below
    # min_pixels, so no upscaling. (transformers would see h' = 0 and upscale to 28x168.)
    assert smart_resize(14, 98, min_pixels=4 * 784, max_pixels=128 * 784) == (28, 112)


def test_extreme_aspect_ratio_rejected():
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2010)
    smart_resize(10, 2000)  # exactly 200 is allowed


def test_bad_sizes():
    with pytest.raises(ValueError, match="height and width"):
        smart_resize(0, 10)
    with pytest.raises(ValueError, match="min_pixels"):
        smart_resize(100, 100, min_pixels=10, max_pixels=5)


@pytest.mark.parametrize(
    "total,fps_src,kw,expected",
    [
        (540, 30000 / 1001, {}, 16),  # 36 wanted, capped at 16
        (182, 3.0, {}, 16),
        (60, 30.0, {}, 4),  # 2 s at 2 fps = 4
        (75, 30.0, {}, 4),  # 5.0 -> floored to even 4
        (105, 30.0, {}, 6),  # 7.0 -> 6
        (3, 30.0, {}, 2),  # too few frames: min(4, 3) -> 2
        (540, 30000 / 1001, {"max_frames": 64}, 36),
        (540, 30000 / 1001, {"max_frames": 15}, 14),  # max floored to even
        (30, 30.0, {"min_frames": 5}, 6),  # min ceiled to even
    ],
)
def test_smart_nframes(total, fps_src, kw, expected):
    assert smart_nframes(total, fps_src, **kw) == expected


def test_smart_nframes_one_frame_rejected():
    with pytest.raises(ValueError, match="nframes"):
        smart_nframes(1, 30.0)


def test_sample_indices_linspace_rounding():
    np.testing.assert_array_equal(sample_indices(10, 4), [0, 3, 6, 9])
    idx = sample_indices(540, 16)
    assert idx[0] == 0 and idx[-1] == 539 and np.all(np.diff(idx) > 0)
    # torch.linspace(...).round() rounds half to even: 0.5 -> 0, 2.5 -> 2
    np.testing.assert_array_equal(sample_indices(6, 3), [0, 2, 5])
    assert math.isclose(np.linspace(0, 5, 3)[1], 2.5)
