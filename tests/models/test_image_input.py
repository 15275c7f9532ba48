"""Image input (`pixel_values`, `image_grid_thw`): parity with transformers'
Qwen2_5_VLForConditionalGeneration (torch CPU, float32) on images alone, images with videos in
either order, and a left-padded batch whose rows hold different numbers of image tokens."""
from __future__ import annotations

import numpy as np
import pytest

from tests.models.hf_reference import (
    IMAGE_ID, VIDEO_ID, build_hf_model, hf_logits, image_patches, make_mm_rows, token_types,
)

# float32 logits of O(5): reduction-order differences are ~1e-6; the bar is 1e-4.
TOL = 1e-4

# Images of 56x84 and 84x140 pixels: grids (1, 4, 6) and (1, 6, 10), 6 and 15 merged tokens
# (the second's 2x2-unit windows cross its right and bottom edges).
SIZES = [(56, 84), (84, 140)]
VGRID = np.array([[2, 4, 6], [2, 6, 4]])
VSEC = np.array([1.3, 0.75], np.float32)

# name -> (rows, number of images, number of videos, left_pad)
CASES = {
    "text_image": ([[1001, 5, 17, "I", 33, 44]], 1, 0, True),
    "image_then_video_and_video_then_image": (
        [[1001, 5, "I", 7, "V", 33], [1001, 9, "V", "I", 21, 22]], 2, 2, True),
    "left_padded_rows_with_6_15_and_no_image_tokens": (
        [[1001, 5, "I", 33], [1001, "I", 9, 10, 11, 12, 13, 14, 15], [1001, 2, 3, 4]], 2, 0, True),
}
# Right padding, two images in one row and a video between them: rope only.
ROPE_ONLY = {
    "right_padded_two_images_in_a_row": (
        [[3, "I", 5, "V", 6, "I", 7], [8, 9], ["V", 10, "I"]], 3, 2, False),
}


def _inputs(name):
    rows, n_img, n_vid, left = {**CASES, **ROPE_ONLY}[name]
    sizes = (SIZES * 2)[:n_img]
    ipx, igrid = image_patches(sizes, seed=len(name))
    vgrid, vsec = VGRID[:n_vid], VSEC[:n_vid]
    ids, mask = make_mm_rows(rows, image_grid=igrid, video_grid=vgrid, left_pad=left)
    vpx = np.random.default_rng(3).standard_normal((int(vgrid.prod(1).sum()), 1176)).astype(np.float32)
    return ids, mask, ipx, igrid, (vpx if n_vid else None), (vgrid if n_vid else None), (vsec if n_vid else None)


@pytest.fixture(scope="module")
def hf_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf_tiny_img")
    return d, build_hf_model(d, seed=5)


@pytest.mark.torch
@pytest.mark.parametrize("name", [*CASES, *ROPE_ONLY])
def test_rope_index_matches_transformers(hf_ckpt, name):
    import torch

    from visd_jax.models import get_rope_index

    _, hf = hf_ckpt
    ids, mask, _, igrid, _, vgrid, vsec = _inputs(name)
    kw = {} if vgrid is None else dict(video_grid_thw=torch.as_tensor(vgrid), second_per_grid_ts=torch.as_tensor(vsec))
    ref_pos, ref_delta = hf.model.get_rope_index(
        torch.as_tensor(ids), mm_token_type_ids=torch.as_tensor(token_types(ids)),
        image_grid_thw=torch.as_tensor(igrid), attention_mask=torch.as_tensor(mask), **kw)
    pos, delta = get_rope_index(ids, mask, vgrid, vsec, video_token_id=VIDEO_ID, spatial_merge_size=2,
                                tokens_per_second=2, image_grid_thw=igrid, image_token_id=IMAGE_ID)
    np.testing.assert_array_equal(np.asarray(pos), ref_pos.numpy())
    np.testing.assert_array_equal(np.asarray(delta), ref_delta.numpy()[:, 0])
    assert (ids == IMAGE_ID).any()


def _forward(model, ids, mask, ipx, igrid, vpx=None, vgrid=None, vsec=None):
    """Jitted logits for each image pixel array in `ipx` (a list), grids static."""
    from flax import nnx

    igrid_t = tuple(map(tuple, igrid.tolist()))
    vgrid_t = None if vgrid is None else tuple(map(tuple, vgrid.tolist()))
    f = nnx.jit(lambda m, a, b, c, s, p: m(a, b, c, vgrid_t, s, pixel_values=p, image_grid_thw=igrid_t))
    return [np.asarray(f(model, ids, mask, vpx, vsec, p)) for p in ipx]


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_logits_match_transformers(hf_ckpt, name):
    from visd_jax.models.hf_io import load_hf_checkpoint

    d, hf = hf_ckpt
    ids, mask, ipx, igrid, vpx, vgrid, vsec = _inputs(name)
    ref = hf_logits(hf, ids, mask, vpx, vgrid, vsec, image_pixels=ipx, image_grid=igrid)
    ours, other = _forward(load_hf_checkpoint(d), ids, mask, [ipx, ipx[::-1].copy()], igrid, vpx, vgrid, vsec)
    valid = mask.astype(bool)  # padded query rows are undefined in both implementations
    assert ours.shape == ref.shape
    assert np.abs(ref[valid]).max() > 1.0  # weights large enough that positions matter
    np.testing.assert_allclose(ours[valid], ref[valid], rtol=0, atol=TOL)
    # The image must matter: other pixels change the logits after the image block.
    assert np.abs(other[valid] - ours[valid]).max() > 1e-3


@pytest.mark.torch
@pytest.mark.slow
def test_scanned_decoder_takes_images(hf_ckpt):
    from visd_jax.models.hf_io import load_hf_checkpoint

    d, hf = hf_ckpt
    ids, mask, ipx, igrid, vpx, vgrid, vsec = _inputs("image_then_video_and_video_then_image")
    ref = hf_logits(hf, ids, mask, vpx, vgrid, vsec, image_pixels=ipx, image_grid=igrid)
    (ours,) = _forward(load_hf_checkpoint(d, scan_layers=True), ids, mask, [ipx], igrid, vpx, vgrid, vsec)
    valid = mask.astype(bool)
    np.testing.assert_allclose(ours[valid], ref[valid], rtol=0, atol=TOL)


@pytest.fixture(scope="module")
def tiny():
    from visd_jax.models import Qwen25VL, Qwen25VLConfig

    return Qwen25VL.create(Qwen25VLConfig.preset("tiny"), seed=1)


def test_tiny_preset_image_token_is_the_tokenizers():
    from visd_jax.models import Qwen25VLConfig
    from visd_jax.text.tokenizer import IMAGE_PAD_ID, VIDEO_PAD_ID

    cfg = Qwen25VLConfig.preset("tiny")
    assert (cfg.image_token_id, cfg.video_token_id) == (IMAGE_PAD_ID, VIDEO_PAD_ID) == (IMAGE_ID, VIDEO_ID)


def test_bad_image_calls_are_clear_errors(tiny):
    grid = np.array([[1, 4, 6]])
    ids, mask = make_mm_rows([[1001, "I", 5]], image_grid=grid)
    px = np.zeros((24, 1176), np.float32)
    with pytest.raises(ValueError, match="pixel_values and image_grid_thw must be given together"):
        tiny(ids, mask, pixel_values=px)
    with pytest.raises(ValueError, match="pixel_values and image_grid_thw must be given together"):
        tiny(ids, mask, image_grid_thw=grid)
    bad_shape = r"pixel_values has shape \(20, 1176\); image_grid_thw \[\[1, 4, 6\]\] needs \(24, 1176\)"
    with pytest.raises(ValueError, match=bad_shape):
        tiny(ids, mask, pixel_values=px[:20], image_grid_thw=grid)
    with pytest.raises(ValueError, match=r"input_ids hold 6 image tokens \(id 1012\) but the image grids give 15"):
        tiny(ids, mask, pixel_values=np.zeros((60, 1176), np.float32), image_grid_thw=[[1, 6, 10]])
    short = np.delete(ids, 2, axis=1)  # one image token fewer than the grid
    with pytest.raises(ValueError, match="input_ids hold 5 image tokens"):
        tiny(short, mask[:, 1:], pixel_values=px, image_grid_thw=grid)


def test_uint8_pixel_patches_are_normalised_by_the_vision_tower(tiny):
    """The pipeline ships raw uint8 patches; the tower normalises them on the device and
    must see what it sees from float patches normalised on the host."""
    import jax
    import jax.numpy as jnp

    from visd_jax.video import normalize_patches, patchify

    frames = np.random.default_rng(4).integers(0, 256, (4, 56, 84, 3), dtype=np.uint8)
    raw, grid = patchify(frames, normalize=False)
    assert raw.dtype == np.uint8
    normed, grid2 = patchify(frames)
    np.testing.assert_array_equal(grid, grid2)
    np.testing.assert_array_equal(normalize_patches(raw), normed)
    np.testing.assert_array_equal(np.asarray(jax.jit(normalize_patches)(jnp.asarray(raw))), normed)
    out_u8 = np.asarray(tiny.visual(raw, grid))
    out_f32 = np.asarray(tiny.visual(normed, grid))
    np.testing.assert_array_equal(out_u8, out_f32)  # same values in, same values out
    with pytest.raises(ValueError, match="uint8"):
        normalize_patches(raw.astype(np.int32))
