"""Rotary positions: the vision tower's 2-D rope and the decoder's multimodal rope (M-RoPE).

Qwen2.5-VL (Bai et al., 2025, sec. 2.1): every decoder token has three position ids
(time, height, width). Text tokens use the same id on all three; a video's merged patch at
(t, h, w) gets (s + floor(t * tokens_per_second * second_per_grid_t), s + h, s + w), where s
is the running position when the video starts; the running position then advances by
max(H, W) / merge (transformers 5.x `Qwen2_5_VLModel.get_rope_index`). An image is a
one-frame block with temporal id s (no seconds scaling).
"""
from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp


def inv_freq(dim: int, theta: float) -> jax.Array:
    """1 / theta^(2i/dim) for i < dim/2, in float32 as the reference computes it."""
    return 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))


def vision_hw_ids(grid_h: int, grid_w: int, merge: int) -> np.ndarray:
    """(h, w) patch coordinates in the processor's block-major order: [H*W, 2].

    The processor emits a frame's patches merge-block by merge-block (each 2x2 block's four
    patches are consecutive) so the merger can view 4 consecutive tokens as one.
    """
    if grid_h % merge or grid_w % merge:
        raise ValueError(f"video grid {grid_h}x{grid_w} is not divisible by spatial_merge_size {merge}")
    hh, ww = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    shape = (grid_h // merge, merge, grid_w // merge, merge)
    hh = hh.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
    ww = ww.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
    return np.stack([hh, ww], axis=-1)


def vision_cos_sin(grid_h: int, grid_w: int, *, head_dim: int, theta: float, merge: int):
    """cos, sin [H*W, head_dim] of the axial 2-D rope: half the frequencies for h, half for w."""
    ids = jnp.asarray(vision_hw_ids(grid_h, grid_w, merge), jnp.float32)
    freq = inv_freq(head_dim // 2, theta)  # head_dim // 4 frequencies, shared by h and w
    f_h = ids[:, 0:1] * freq
    f_w = ids[:, 1:2] * freq
    f = jnp.concatenate([f_h, f_w], axis=-1)
    f = jnp.concatenate([f, f], axis=-1)
    return jnp.cos(f), jnp.sin(f)


def mrope_cos_sin(positions_3xBxT: jax.Array, *, head_dim: int, theta: float, mrope_section):
    """cos, sin [B, T, head_dim]: frequency band i of `mrope_section` uses position row i."""
    freq = inv_freq(head_dim, theta)  # [head_dim/2]
    f = positions_3xBxT.astype(jnp.float32)[..., None] * freq  # [3, B, T, head_dim/2]
    bounds = np.cumsum([0, *mrope_section])
    f = jnp.concatenate([f[i, ..., bounds[i]: bounds[i + 1]] for i in range(3)], axis=-1)
    f = jnp.concatenate([f, f], axis=-1)
    return jnp.cos(f), jnp.sin(f)


def get_rope_index(
    input_ids_BxT: jax.Array,
    attention_mask_BxT: jax.Array | None = None,
    video_grid_thw: np.ndarray | None = None,
    second_per_grid_ts: jax.Array | None = None,
    *,
    video_token_id: int,
    spatial_merge_size: int,
    tokens_per_second: int,
    image_grid_thw: np.ndarray | None = None,
    image_token_id: int | None = None,
):
    """3-D positions [3, B, T] (int32, 0 at padding) and rope deltas [B] for decoding.

    Traceable: the token layout may be a tracer; the grids [num, 3] must be concrete (they
    fix array shapes anyway). Each maximal run of image (resp. video) tokens is one image
    (resp. video); images and videos are each numbered row-major over the batch, as in
    transformers, and may interleave in any order. An image block at running position s gets
    (s + t, s + h, s + w) with t = 0 for a one-frame grid (no seconds scaling); a video gets
    (s + floor(t * tokens_per_second * second_per_grid_t), s + h, s + w). The delta is
    max(position) + 1 - num_valid_tokens: the next generated token at valid index n gets
    position n + delta.
    """
    # concrete NumPy in, NumPy out (the host builds positions for bucketed batches without
    # a compile per grid); anything else runs as jnp, traceable
    xp = np if isinstance(input_ids_BxT, np.ndarray) and not isinstance(attention_mask_BxT, jax.Array) else jnp
    ids = xp.asarray(input_ids_BxT)
    B, T = ids.shape
    valid = xp.ones((B, T), bool) if attention_mask_BxT is None else xp.asarray(attention_mask_BxT).astype(bool)
    if image_grid_thw is not None and image_token_id is None:
        raise ValueError("image_grid_thw needs image_token_id")
    is_vid = (ids == video_token_id) & valid
    is_img = xp.zeros_like(is_vid) if image_grid_thw is None else (ids == image_token_id) & valid
    vgrid, igrid = (np.zeros((0, 3), np.int64) if g is None else np.asarray(g, np.int64).reshape(-1, 3)
                    for g in (video_grid_thw, image_grid_thw))
    n_img, n_vid = igrid.shape[0], vgrid.shape[0]
    # One table for both modalities: images first (rows 0..n_img-1), then videos. A dummy
    # row keeps the gathers well-formed when neither is given (it is never selected).
    grid = np.concatenate([igrid, vgrid, np.ones((1, 3), np.int64)])
    lh = xp.asarray(grid[:, 1] // spatial_merge_size, xp.int32)
    lw = xp.asarray(grid[:, 2] // spatial_merge_size, xp.int32)
    if second_per_grid_ts is None:
        vid_interval = xp.full((n_vid,), float(tokens_per_second), xp.float32)
    else:
        vid_interval = tokens_per_second * xp.asarray(second_per_grid_ts, xp.float32).reshape(-1)[:n_vid]
    # Still images are not spaced in time: their temporal step is 1 (transformers, #45325).
    interval = xp.concatenate([xp.ones((n_img,), xp.float32), vid_interval, xp.ones((1,), xp.float32)])

    kind = is_img.astype(xp.int32) + 2 * is_vid.astype(xp.int32)  # 0 text, 1 image, 2 video
    is_mm = kind > 0
    prev = xp.pad(kind[:, :-1], ((0, 0), (1, 0)))
    nxt = xp.pad(kind[:, 1:], ((0, 0), (0, 1)))
    start = is_mm & (kind != prev)
    last = is_mm & (kind != nxt)
    # Per-modality item index, numbered row-major across the batch.
    img_idx = (xp.cumsum((start & is_img).reshape(-1).astype(xp.int32)) - 1).reshape(B, T)
    vid_idx = (xp.cumsum((start & is_vid).reshape(-1).astype(xp.int32)) - 1).reshape(B, T)
    row = xp.where(is_img, xp.clip(img_idx, 0, max(n_img - 1, 0)),
                    xp.where(is_vid, n_img + xp.clip(vid_idx, 0, max(n_vid - 1, 0)), n_img + n_vid))
    # Rank of a token inside its run: count of vision tokens since the run's start.
    count = xp.cumsum(is_mm.astype(xp.int32), axis=1)
    at_start = xp.where(start, count - 1, 0)
    run_base = (np.maximum.accumulate(at_start, axis=1) if xp is np else jax.lax.cummax(at_start, axis=1))
    j = count - 1 - run_base
    g_h, g_w, g_int = lh[row], lw[row], interval[row]
    hw = g_h * g_w
    t_i = j // xp.maximum(hw, 1)
    r = j % xp.maximum(hw, 1)
    h_i, w_i = r // xp.maximum(g_w, 1), r % xp.maximum(g_w, 1)
    t_pos = xp.floor(t_i.astype(xp.float32) * g_int).astype(xp.int32)

    # Running position: +1 after each valid text token, +max(h, w) after a block's last token.
    inc = xp.where(valid & ~is_mm, 1, 0) + xp.where(last, xp.maximum(g_h, g_w), 0)
    base = xp.cumsum(inc, axis=1) - inc  # exclusive: the position where this token starts
    text_pos = xp.broadcast_to(base, (3, B, T))
    mm_pos = xp.stack([base + t_pos, base + h_i, base + w_i])
    pos = xp.where(is_mm[None], mm_pos, text_pos)
    pos = xp.where(valid[None], pos, 0).astype(xp.int32)
    max_pos = xp.max(xp.where(valid[None], pos, -1), axis=(0, 2))
    deltas = max_pos + 1 - xp.sum(valid, axis=1).astype(xp.int32)
    return pos, deltas
