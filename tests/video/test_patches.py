"""patchify against transformers' Qwen2-VL video and image processors (the defining code)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visd_jax.video import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, patchify

F32 = np.finfo(np.float32).eps


def _frames(t, h=56, w=84, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def _hf_video(frames):
    # transformers' video processor imports torchvision at module level.
    pytest.importorskip("torchvision", reason="transformers' Qwen2VLVideoProcessor needs torchvision")
    import torch
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    proc = Qwen2VLVideoProcessor()
    video = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()  # TCHW
    out = proc(videos=[video], do_resize=False, do_sample_frames=False, return_tensors="pt")
    return out["pixel_values_videos"].numpy(), out["video_grid_thw"].numpy()[0]


@pytest.mark.torch
@pytest.mark.parametrize("t", [2, 4, 5])  # 5: odd, last frame repeated
def test_matches_transformers_video_processor(t):
    frames = _frames(t)
    ref, ref_grid = _hf_video(frames)
    ours, grid = patchify(frames)
    np.testing.assert_array_equal(grid, ref_grid)
    assert ours.shape == ref.shape == (int(np.prod(grid)), 3 * 2 * 14 * 14)
    # transformers fuses rescale+normalise as (x - 255*mean) / (255*std): a few ulp apart.
    np.testing.assert_allclose(ours, ref, rtol=4 * F32, atol=4 * F32 * 4)


@pytest.mark.parametrize("hw", [(56, 84), (84, 112)])
def test_matches_transformers_image_processor(hw):
    """One frame: transformers repeats it to fill the temporal patch, as patchify pads T=1."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    frame = _frames(1, *hw, seed=3)
    out = Qwen2VLImageProcessorPil()(images=[frame[0]], do_resize=False, return_tensors="np")
    ours, grid = patchify(frame)
    np.testing.assert_array_equal(grid, out["image_grid_thw"][0])
    ref = np.asarray(out["pixel_values"])
    assert ref.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)  # bit for bit, not just within ulps


def test_every_uint8_value_normalises_as_transformers_does():
    """Every uint8 value in every channel, NumPy and jitted JAX, against transformers' own
    rescale (float64 multiply, float32 result) and normalize functions, bit for bit."""
    from transformers.image_transforms import normalize, rescale

    frames = (np.arange(2 * 56 * 28 * 3) % 256).astype(np.uint8).reshape(2, 56, 28, 3)
    for c in range(3):  # 256 is 1 mod 3, so each value visits each channel
        assert len(np.unique(frames[..., c])) == 256
    ref = np.stack([normalize(rescale(f, 1 / 255), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
                              input_data_format="channels_last") for f in frames])
    assert ref.dtype == np.float32
    # the same patch layout for the reference values (identity normalisation, exact)
    expect, _ = patchify(ref, rescale=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    np.testing.assert_array_equal(patchify(frames)[0], expect)
    np.testing.assert_array_equal(np.asarray(jax.jit(patchify)(jnp.asarray(frames))[0]), expect)


def test_against_float64_loop():
    """Independent restatement: walk merge windows and patches with explicit loops."""
    frames = _frames(3, 56, 56, seed=1)
    ours, (gt, gh, gw) = patchify(frames)
    x = (frames.astype(np.float64) / 255 - np.array(OPENAI_CLIP_MEAN)) / np.array(OPENAI_CLIP_STD)
    x = np.concatenate([x, x[-1:]])  # T=3 -> repeat the last frame
    rows = []
    for t in range(gt):
        for bh in range(gh // 2):
            for bw in range(gw // 2):
                for mh in range(2):
                    for mw in range(2):
                        r, c = (2 * bh + mh) * 14, (2 * bw + mw) * 14
                        block = x[2 * t : 2 * t + 2, r : r + 14, c : c + 14, :]  # tp, p, p, C
                        rows.append(block.transpose(3, 0, 1, 2).reshape(-1))
    np.testing.assert_allclose(ours, np.stack(rows), rtol=8 * F32, atol=8 * F32)


def test_jax_input_jits_and_matches_numpy():
    frames = _frames(4)
    ref, grid = patchify(frames)
    out, grid_j = jax.jit(lambda f: patchify(f))(jnp.asarray(frames))
    np.testing.assert_allclose(np.asarray(out), ref, rtol=F32, atol=F32)
    np.testing.assert_array_equal(grid_j, grid)


def test_bad_shapes():
    with pytest.raises(ValueError, match="multiple of"):
        patchify(_frames(2, 50, 56))
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        patchify(np.zeros((2, 56, 56), np.uint8))
