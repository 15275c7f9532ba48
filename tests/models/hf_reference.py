"""Shared test inputs: a tiny random transformers Qwen2.5-VL and padded text+video(+image) batches.

The reference model is built from transformers' own `Qwen2_5_VLConfig` (not from our
config code) and saved with `save_pretrained`.
"""
from __future__ import annotations

import numpy as np

VIDEO_ID, VSTART, VEND, PAD = 1013, 1009, 1010, 1000
IMAGE_ID = 1012

HF_TINY = dict(
    text_config=dict(
        vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-6, initializer_range=0.15,
        rope_parameters=dict(rope_type="default", rope_theta=10000.0, mrope_section=[2, 3, 3]),
    ),
    vision_config=dict(
        depth=3, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
        window_size=56, fullatt_block_indexes=[1], tokens_per_second=2, patch_size=14,
        temporal_patch_size=2, spatial_merge_size=2, in_channels=3,
        initializer_range=0.15,
    ),
    image_token_id=IMAGE_ID, video_token_id=VIDEO_ID, vision_start_token_id=VSTART,
    vision_end_token_id=VEND, tie_word_embeddings=False, initializer_range=0.15,
)

# Video A: 2 temporal patches of 6x10 patches -> 3x5 merged units per frame (odd, and the
# 2x2-unit windows cross the frame's right and bottom edges). Video B: 3 temporal patches of
# 4x6 patches. Non-integer seconds per temporal patch exercise the floor in M-RoPE.
GRID = np.array([[2, 6, 10], [3, 4, 6]])
SECONDS = np.array([1.3, 0.75], np.float32)


def make_batch(seed: int = 0, *, patch_dim: int = 1176):
    """Left-padded batch of two rows, each text + one video + text."""
    rng = np.random.default_rng(seed)
    n_tok = [int(t * h * w // 4) for t, h, w in GRID]
    rows = [
        [1001, 5, 17, VSTART] + [VIDEO_ID] * n_tok[0] + [VEND, 33, 44, 55, 66, 1002],
        [1001, 9, VSTART] + [VIDEO_ID] * n_tok[1] + [VEND, 21, 22],
    ]
    T = max(map(len, rows))
    ids = np.full((2, T), PAD, np.int64)
    mask = np.zeros((2, T), np.int64)
    for i, r in enumerate(rows):
        ids[i, T - len(r):] = r
        mask[i, T - len(r):] = 1
    pixels = rng.standard_normal((int(np.prod(GRID, axis=1).sum()), patch_dim)).astype(np.float32)
    return ids, mask, pixels


def build_hf_model(directory, seed: int = 0, **overrides):
    """Random transformers model from HF_TINY, saved to `directory`; returns the torch model."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    cfg = Qwen2_5_VLConfig(**{**HF_TINY, **overrides})
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    # Non-trivial norm weights and biases so a transposed or skipped tensor cannot hide.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "ln_q" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(directory)
    return model


def token_types(ids):
    """transformers' mm_token_type_ids: 0 text, 1 image, 2 video."""
    ids = np.asarray(ids)
    return ((ids == IMAGE_ID) * 1 + (ids == VIDEO_ID) * 2).astype(np.int64)


def image_patches(sizes, seed: int = 0):
    """transformers' own image processor (PIL backend) on random RGB images.

    `sizes`: (height, width) pixels per image, multiples of 28 so the processor keeps them.
    Returns (pixel_values [sum_i H_i*W_i/196, 1176] float32, image_grid_thw [n, 3] int64):
    each image repeated to a frame pair and cut in merge-block order, the processor's layout.
    """
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    rng = np.random.default_rng(seed)
    proc = Qwen2VLImageProcessorPil()
    px, grids = [], []
    for h, w in sizes:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out = proc(images=[img], return_tensors="np")
        px.append(np.asarray(out["pixel_values"], np.float32))
        grids.append(np.asarray(out["image_grid_thw"], np.int64).reshape(3))
    return np.concatenate(px), np.stack(grids)


def make_mm_rows(rows, *, image_grid=(), video_grid=(), left_pad: bool = True):
    """Padded ids and mask from rows of text ids and "I" / "V" markers.

    Each marker is the next image (video) in row-major order: vision_start, t*h*w/4 pad
    tokens of its grid, vision_end.
    """
    it = {"I": iter(image_grid), "V": iter(video_grid)}
    tok = {"I": IMAGE_ID, "V": VIDEO_ID}
    built = []
    for r in rows:
        out = []
        for x in r:
            if x in it:
                t, h, w = next(it[x])
                out += [VSTART] + [tok[x]] * int(t * h * w // 4) + [VEND]
            else:
                out.append(int(x))
        built.append(out)
    T = max(map(len, built))
    ids = np.full((len(built), T), PAD, np.int64)
    mask = np.zeros((len(built), T), np.int64)
    for i, r in enumerate(built):
        sl = slice(T - len(r), T) if left_pad else slice(0, len(r))
        ids[i, sl] = r
        mask[i, sl] = 1
    return ids, mask


def hf_logits(model, ids, mask, pixels=None, grid=GRID, seconds=SECONDS, *, image_pixels=None, image_grid=None):
    """transformers' logits; videos when `pixels` is given, images when `image_pixels` is."""
    import torch

    kw = {}
    if pixels is not None:
        kw.update(pixel_values_videos=torch.as_tensor(pixels), video_grid_thw=torch.as_tensor(grid),
                  second_per_grid_ts=torch.as_tensor(seconds))
    if image_pixels is not None:
        kw.update(pixel_values=torch.as_tensor(image_pixels), image_grid_thw=torch.as_tensor(image_grid))
    with torch.no_grad():
        out = model(
            input_ids=torch.as_tensor(ids),
            attention_mask=torch.as_tensor(mask),
            mm_token_type_ids=torch.as_tensor(token_types(ids)),
            **kw,
        )
    return out.logits.float().numpy()
