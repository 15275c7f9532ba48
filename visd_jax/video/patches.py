"""Qwen2-VL / Qwen2.5-VL patch layout: frames -> (patches [N, C*tp*p*p], grid_thw).

Works on NumPy (grain workers, no JAX needed) and on jax.Array (jittable; shapes static).
"""
from __future__ import annotations

import numpy as np

# CLIP statistics used by every Qwen2-VL processor (transformers' OPENAI_CLIP_MEAN/STD).
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _xp(x):
    if isinstance(x, np.ndarray):
        return np
    import jax.numpy as jnp

    return jnp


def _normalise(x, rescale, mean, std, xp):
    """(x * rescale - mean) / std in float32, in the rounding the docstring below argues."""
    x = x.astype(xp.float32)
    divisor = round(1.0 / rescale)
    if divisor > 0 and divisor * rescale == 1.0:  # e.g. 1/255: divide
        x = x / xp.float32(divisor)
    else:
        x = x * xp.float32(rescale)
    return (x - xp.asarray(mean, dtype=xp.float32)) / xp.asarray(std, dtype=xp.float32)


def patchify(
    frames_TxHxWx3,
    *,
    patch_size: int = 14,
    temporal_patch_size: int = 2,
    merge_size: int = 2,
    rescale: float = 1.0 / 255.0,
    mean=OPENAI_CLIP_MEAN,
    std=OPENAI_CLIP_STD,
    normalize: bool = True,
):
    """Normalise and cut frames into Qwen2-VL vision patches.

    normalize=False only cuts: the patches keep the frames' dtype (uint8 pixels, a quarter
    of float32's bytes through worker pipes and onto the device), and the model normalises
    them in its jitted step (`normalize_patches`, called by the vision tower for uint8
    input).

    x = (frames * rescale - mean) / std  (float32, per channel), bit for bit what
    transformers' Qwen2-VL image processor (its NumPy/PIL backend) computes for uint8 frames
    with the default 1/255: that one rescales in float64 and rounds to float32, which for
    all 256 values equals a float32 division by 255 (checked exhaustively in the tests), so
    no float64 is needed here (TPUs have none). Under jit, uint8 frames go through a
    256-entry table with the same values; float frames are computed arithmetically and XLA
    may land 1 ulp away. transformers' torchvision backend fuses the two steps as
    (x - 255 mean) / (255 std) and lands a few ulp away. If T is not a multiple of
    `temporal_patch_size`, the last frame is repeated. With gt = T/tp, gh = H/p, gw = W/p:
    x[T, C, H, W] -> [gt, tp, C, gh/m, m, p, gw/m, m, p] -> axes (0, 3, 6, 4, 7, 2, 1, 5, 8)
    -> [gt*gh*gw, C*tp*p*p], i.e. patches ordered by time, then 2x2 merge windows in raster
    order, then raster order inside a window; each patch flattened channel-major, then
    time, then rows, then columns (transformers' Qwen2VLImageProcessor / VideoProcessor).

    Returns (patches [N, 3*tp*p*p] float32, grid_thw int64 [3] = (gt, gh, gw)).
    """
    xp = _xp(frames_TxHxWx3)
    if frames_TxHxWx3.ndim != 4 or frames_TxHxWx3.shape[-1] != 3:
        raise ValueError(f"patchify: frames must be [T, H, W, 3], got shape {frames_TxHxWx3.shape}")
    t, h, w, c = frames_TxHxWx3.shape
    unit = patch_size * merge_size
    if h % unit or w % unit:
        raise ValueError(
            f"patchify: frame size {h}x{w} must be a multiple of patch_size*merge_size={unit}"
        )
    if t == 0:
        raise ValueError("patchify: frames must contain at least one frame")
    # uint8 frames are cut first and normalised as patches (one code path, exact under jit)
    pixels_first = not normalize or frames_TxHxWx3.dtype == np.uint8
    x = xp.asarray(frames_TxHxWx3)
    if not pixels_first:
        x = _normalise(x, rescale, mean, std, xp)
    if pad := -t % temporal_patch_size:
        x = xp.concatenate([x, xp.repeat(x[-1:], pad, axis=0)], axis=0)
    gt, gh, gw = (t + pad) // temporal_patch_size, h // patch_size, w // patch_size
    m, p = merge_size, patch_size
    # Channels-last input: [gt, tp, gh/m, m, p, gw/m, m, p, C]
    x = x.reshape(gt, temporal_patch_size, gh // m, m, p, gw // m, m, p, c)
    # -> [gt, gh/m, gw/m, m(row), m(col), C, tp, p, p]
    x = x.transpose(0, 2, 5, 3, 6, 8, 1, 4, 7)
    patches = x.reshape(gt * gh * gw, c * temporal_patch_size * p * p)
    if normalize and pixels_first:
        patches = normalize_patches(patches, channels=c, rescale=rescale, mean=mean, std=std)
    return patches, np.array([gt, gh, gw], dtype=np.int64)


def normalize_patches(patches_NxD, *, channels: int = 3, rescale: float = 1.0 / 255.0,
                      mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD):
    """Float32 patches from `patchify(..., normalize=False)` uint8 pixel patches: the same
    values as `patchify(...)` with normalize=True, bit for bit, in NumPy and under jit.

    Each patch is laid out channel-major, so channel c is the c-th D/channels slice. Under
    jit the values come from a [channels, 256] table made by NumPy (XLA would turn the
    divisions into reciprocal multiplies, 1 ulp off on 3 of 4 values), so moving the
    normalisation from the host to the device leaves training numbers unchanged.
    """
    xp = _xp(patches_NxD)
    n, d = patches_NxD.shape
    if d % channels:
        raise ValueError(f"normalize_patches: patch size {d} is not a multiple of {channels} channels")
    if patches_NxD.dtype != np.uint8:
        raise ValueError(f"normalize_patches: expected uint8 pixel patches, got {patches_NxD.dtype}")
    if xp is np:
        x = patches_NxD.reshape(n, channels, d // channels).swapaxes(1, 2)
        return _normalise(x, rescale, mean, std, np).swapaxes(1, 2).reshape(n, d)
    table = _normalise(np.arange(256, dtype=np.uint8)[:, None], rescale, mean, std, np)  # [256, C]
    flat = xp.asarray(table.T.reshape(-1))  # index c * 256 + v
    offset = (xp.arange(d, dtype=xp.int32) // (d // channels)) * 256  # channel of each column
    return xp.take(flat, patches_NxD.astype(xp.int32) + offset)
