"""Qwen2.5-VL vision tower: patch embedding, windowed/full attention blocks, 2x2 merger.

Input is the processor's flattened patches [N, C*Tp*P*P] (3x2x14x14 = 1176), ordered video
by video, frame (temporal patch) by frame, merge block by merge block. Attention never
crosses a frame: "full" layers attend within a frame, the others within windows of
`merger_window` x `merger_window` merged units (transformers' cu_seqlens and
get_vision_window_index). We compute in the processor's order with padded windows instead
of transformers' permute-then-varlen layout; attention is permutation-equivariant, so the
result is the same up to float summation order.
"""
from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
from flax import nnx

from visd_jax.models.config import VisionConfig
from visd_jax.models.layers import Dense, RMSNorm, SwiGLU, apply_rope, attention, param
from visd_jax.models.rope import vision_cos_sin
from visd_jax.parallel import shard
from visd_jax.video.patches import normalize_patches

_VISION_EPS = 1e-6


def window_layout(grid_h: int, grid_w: int, *, merge: int, window: int):
    """Static gather indices for windowed attention within one frame.

    Returns idx [num_windows, window*window*merge^2] (token index, -1 = padding slot) and
    inv [H*W] (each token's flat slot in idx), windows row-major, merge blocks row-major
    inside a window, the merge^2 tokens of a block consecutive.
    """
    lh, lw = grid_h // merge, grid_w // merge
    unit = merge * merge
    nwh, nww = -(-lh // window), -(-lw // window)
    idx = np.full((nwh * nww, window * window * unit), -1, np.int64)
    inv = np.empty(grid_h * grid_w, np.int64)
    for bh in range(lh):
        for bw in range(lw):
            win = (bh // window) * nww + (bw // window)
            slot = ((bh % window) * window + (bw % window)) * unit
            tok = (bh * lw + bw) * unit
            idx[win, slot: slot + unit] = np.arange(tok, tok + unit)
            inv[tok: tok + unit] = win * idx.shape[1] + slot + np.arange(unit)
    return idx, inv


class VisionAttention(nnx.Module):
    def __init__(self, cfg: VisionConfig, *, param_dtype, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.num_heads = cfg.num_heads
        self.qkv = Dense(d, 3 * d, names=("embed", "heads"), bias=True, param_dtype=param_dtype, rngs=rngs)
        self.proj = Dense(d, d, names=("heads", "embed"), bias=True, bias_name="norm",
                          param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x_FxNxD, cos_NxK, sin_NxK, layout, valid_FxN=None):
        """`valid_FxN` (a canvas's real patches): padded patches are no key of any query."""
        F, N, D = x_FxNxD.shape
        H = self.num_heads
        qkv = self.qkv(x_FxNxD).reshape(F, N, 3, H, D // H)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q, k = apply_rope(q, cos_NxK[None], sin_NxK[None]), apply_rope(k, cos_NxK[None], sin_NxK[None])
        if layout is None:  # full attention inside each frame
            allowed = None if valid_FxN is None else jnp.broadcast_to(valid_FxN[:, None, :], (F, N, N))
            out = attention(q, k, v, allowed)
        else:
            idx, inv = layout
            nw, wt = idx.shape
            take = jnp.asarray(np.maximum(idx, 0).reshape(-1))
            gather = lambda a: a[:, take].reshape(F * nw, wt, H, D // H)  # noqa: E731
            ok = jnp.broadcast_to(jnp.asarray(idx >= 0)[None], (F, nw, wt))
            if valid_FxN is not None:
                ok = ok & valid_FxN[:, take].reshape(F, nw, wt)
            allowed = jnp.broadcast_to(ok[:, :, None, :], (F, nw, wt, wt)).reshape(F * nw, wt, wt)
            out = attention(gather(q), gather(k), gather(v), allowed)
            out = out.reshape(F, nw * wt, H, D // H)[:, jnp.asarray(inv)]
        return self.proj(out.reshape(F, N, D))


class VisionBlock(nnx.Module):
    def __init__(self, cfg: VisionConfig, *, param_dtype, rngs: nnx.Rngs):
        self.norm1 = RMSNorm(cfg.hidden_size, eps=_VISION_EPS, param_dtype=param_dtype)
        self.norm2 = RMSNorm(cfg.hidden_size, eps=_VISION_EPS, param_dtype=param_dtype)
        self.attn = VisionAttention(cfg, param_dtype=param_dtype, rngs=rngs)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size, bias=True, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x, cos, sin, layout, valid=None):
        x = x + self.attn(self.norm1(x), cos, sin, layout, valid)
        return x + self.mlp(self.norm2(x))


class PatchMerger(nnx.Module):
    """RMSNorm, then each 2x2 block's 4 tokens concatenated -> Linear, GELU, Linear."""

    def __init__(self, cfg: VisionConfig, *, param_dtype, rngs: nnx.Rngs):
        d4 = cfg.hidden_size * cfg.spatial_merge_size**2
        self.ln_q = RMSNorm(cfg.hidden_size, eps=_VISION_EPS, param_dtype=param_dtype)
        self.fc1 = Dense(d4, d4, names=("embed", "mlp"), bias=True, param_dtype=param_dtype, rngs=rngs)
        self.fc2 = Dense(d4, cfg.out_hidden_size, names=("mlp", "embed"), bias=True, bias_name="norm",
                         param_dtype=param_dtype, rngs=rngs)
        self.d4 = d4

    def __call__(self, x_FxNxD):
        F, N, _ = x_FxNxD.shape
        x = self.ln_q(x_FxNxD).reshape(F, N * x_FxNxD.shape[-1] // self.d4, self.d4)
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class VisionTower(nnx.Module):
    def __init__(self, cfg: VisionConfig, *, param_dtype, dtype, remat: bool, rngs: nnx.Rngs):
        self.cfg = cfg
        self.dtype = dtype
        self.remat = remat
        # Conv3d with stride = kernel over one patch is a matmul with the flattened kernel.
        self.patch_embed = param(rngs, (cfg.patch_dim, cfg.hidden_size), param_dtype, ("pixels", "embed"))
        self.blocks = nnx.List(
            [VisionBlock(cfg, param_dtype=param_dtype, rngs=rngs) for _ in range(cfg.depth)]
        )
        self.merger = PatchMerger(cfg, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, pixel_values_NxP: jax.Array, grid_thw) -> jax.Array:
        """[N, patch_dim] patches -> [N / merge^2, out_hidden_size] merged tokens, video order.

        Float patches are taken as normalised (transformers' pixel_values); uint8 patches
        as raw pixels (`patchify(..., normalize=False)`, what the pipeline ships) and are
        normalised here, on the device, to the same values.
        """
        cfg = self.cfg
        grid = np.asarray(grid_thw, np.int64).reshape(-1, 3)
        n_expected = int(np.sum(np.prod(grid, axis=1)))
        if pixel_values_NxP.ndim != 2 or pixel_values_NxP.shape != (n_expected, cfg.patch_dim):
            raise ValueError(
                f"pixel_values_videos has shape {tuple(pixel_values_NxP.shape)}; video_grid_thw "
                f"{grid.tolist()} needs ({n_expected}, {cfg.patch_dim})"
            )
        offsets = np.concatenate([[0], np.cumsum(np.prod(grid, axis=1))])
        if pixel_values_NxP.dtype == jnp.uint8:
            pixel_values_NxP = normalize_patches(jnp.asarray(pixel_values_NxP), channels=cfg.in_channels)
        x_all = pixel_values_NxP.astype(self.dtype)
        outs: dict[int, jax.Array] = {}
        # Videos with the same frame size share one batched pass over their frames.
        for hw in sorted({(int(h), int(w)) for _, h, w in grid}):
            members = [i for i, (_, h, w) in enumerate(grid) if (h, w) == hw]
            frames = jnp.concatenate(
                [x_all[offsets[i]: offsets[i + 1]].reshape(int(grid[i, 0]), hw[0] * hw[1], -1) for i in members]
            )
            merged = self._frames(frames, *hw)
            start = 0
            for i in members:
                t = int(grid[i, 0])
                outs[i] = merged[start: start + t].reshape(-1, merged.shape[-1])
                start += t
        return jnp.concatenate([outs[i] for i in range(len(grid))])

    def encode_canvas(self, pixels_MxSxP: jax.Array, valid_MxS: jax.Array, canvas: tuple[int, int]) -> jax.Array:
        """Blocks padded into one canvas (`models.canvas`): [M, S, patch_dim] with S = H*W in
        the processor's order for an H x W frame -> merged tokens [M, S / merge^2, D].

        Every block sits in the canvas's top-left corner, so its patches keep their rope
        coordinates and their windows; padded patches are masked out as keys, and per-token
        layers never mix tokens, so a real patch's output is the one the unpadded block gives.
        """
        H, W = canvas
        if pixels_MxSxP.ndim != 3 or pixels_MxSxP.shape[1:] != (H * W, self.cfg.patch_dim):
            raise ValueError(f"canvas pixels have shape {tuple(pixels_MxSxP.shape)}; a {H}x{W} canvas needs "
                             f"[M, {H * W}, {self.cfg.patch_dim}]")
        x = pixels_MxSxP
        if x.dtype == jnp.uint8:
            x = normalize_patches(x.reshape(-1, x.shape[-1]), channels=self.cfg.in_channels).reshape(x.shape)
        return self._frames(x.astype(self.dtype), H, W, valid_MxS)

    def _frames(self, x_FxNxP, grid_h: int, grid_w: int, valid_FxN=None):
        cfg = self.cfg
        x = jnp.einsum("fnp,pd->fnd", x_FxNxP, self.patch_embed[...].astype(self.dtype))
        x = shard(x, ("frames", "patches", "embed"))
        cos, sin = vision_cos_sin(grid_h, grid_w, head_dim=cfg.head_dim, theta=cfg.rope_theta,
                                  merge=cfg.spatial_merge_size)
        layout = window_layout(grid_h, grid_w, merge=cfg.spatial_merge_size, window=cfg.merger_window)
        full = set(cfg.fullatt_block_indexes)
        for i, blk in enumerate(self.blocks):
            lay = None if i in full else layout
            if self.remat:
                x = nnx.remat(_block_fn(cos, sin, lay, valid_FxN))(blk, x)
            else:
                x = blk(x, cos, sin, lay, valid_FxN)
        return self.merger(x)


def _block_fn(cos, sin, layout, valid=None):
    # A closure, not default arguments: remat would trace defaults and the window layout
    # must stay a concrete numpy array.
    def run(block, x):
        return block(x, cos, sin, layout, valid)

    return run
