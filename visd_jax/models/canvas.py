"""Media in canvases: the bucketed, static-shape form of a batch's images and videos.

A vision block (a video's temporal patch, or an image) of h x w patches sits in the top-left
corner of an H x W canvas; a batch's blocks fill M canvas slots. A program that takes
`Media` compiles once per (M, H, W) instead of once per exact list of grids, and
`CanvasBuckets` draws those from a small set. The exact grids still decide which decoder
token takes which merged patch (`src`) and the M-RoPE positions: both are computed here,
on the host, and travel as arrays, so the device never needs a grid.

Padding changes nothing: a block keeps its patch coordinates (rope) and its attention
windows (windows are cut from the canvas's top-left, as from the block's), padded patches
are no key of any query, and every other layer is per token (`VisionTower.encode_canvas`).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import numpy as np
from flax import struct

from visd_jax.models.rope import get_rope_index


@struct.dataclass
class Media:
    pixels: jax.Array  # [M, H*W, patch_dim]: uint8 raw pixels or float32 normalised
    valid: jax.Array  # [M, H*W] bool: the block's own patches
    canvas: tuple[int, int] = struct.field(pytree_node=False)  # (H, W) in patches

    @property
    def slots(self) -> int:
        return int(self.pixels.shape[0])


@dataclasses.dataclass(frozen=True)
class Block:
    """One vision block: patches [h*w, patch_dim] in the processor's order for an h x w frame."""

    pixels: np.ndarray
    h: int
    w: int
    kind: str  # "video" (a temporal patch of a video) or "image"
    seconds: float = 0.0  # a video block's second_per_grid (M-RoPE time scaling)


def canvas_slots(h: int, w: int, H: int, W: int, merge: int) -> np.ndarray:
    """[h*w]: where each patch of an h x w block goes in an H x W canvas (processor order:
    merge blocks row-major, the merge^2 patches of one consecutive)."""
    unit = merge * merge
    q = np.arange(h * w)
    blk, u = q // unit, q % unit
    bh, bw = blk // (w // merge), blk % (w // merge)
    return (bh * (W // merge) + bw) * unit + u


def merged_slots(h: int, w: int, H: int, W: int, merge: int) -> np.ndarray:
    """[h*w / merge^2]: each merged token of an h x w block in the H x W canvas's merged order."""
    blk = np.arange((h // merge) * (w // merge))
    return (blk // (w // merge)) * (W // merge) + blk % (w // merge)


def _ladder(n: int) -> tuple[int, ...]:
    """1, 2, 3, 4, 6, 8, 12, 16, ... up to the first value >= n: padding wastes under half."""
    values = sorted({2 ** k for k in range(n.bit_length() + 1)} | {3 << k for k in range(n.bit_length())})
    return tuple(v for i, v in enumerate(values) if i == 0 or values[i - 1] < n)


@dataclasses.dataclass(frozen=True)
class CanvasBuckets:
    """The canvases (H, W) and slot counts a run compiles for; `count` bounds the compiles."""

    canvases: tuple[tuple[int, int], ...]
    slots: tuple[int, ...]
    merge: int = 2

    def __post_init__(self):
        if not self.canvases or any(h % self.merge or w % self.merge or h < 1 or w < 1 for h, w in self.canvases):
            raise ValueError(f"canvases must be (H, W) multiples of {self.merge}, got {self.canvases}")
        if not self.slots or list(self.slots) != sorted(set(self.slots)) or self.slots[0] < 1:
            raise ValueError(f"slot buckets must be increasing positive counts, got {self.slots}")

    @property
    def count(self) -> int:
        return len(self.canvases) * len(self.slots)

    @classmethod
    def for_area(cls, max_patches: int, max_blocks: int, *, merge: int = 2, ratio: float = 1.5,
                 max_aspect: float = 5.0, scales=(1.0, 0.25)) -> "CanvasBuckets":
        """Canvases covering every block of at most `max_patches` patches with aspect ratio
        within 1/max_aspect..max_aspect: band k holds heights in sqrt(A) * ratio^[k-1, k] and
        the widths that go with them, so each canvas is at most ~ratio times a block at the
        budget A. The same bands at A * scale for each of `scales` keep blocks well under the
        budget (small sources, which a resize does not enlarge) from padding out to A."""
        up = lambda x: max(merge, merge * math.ceil(x / merge - 1e-9))  # noqa: E731
        k_max = math.ceil(math.log(math.sqrt(max_aspect)) / math.log(ratio))
        canvases = set()
        for scale in scales:
            root = math.sqrt(max_patches * scale)
            canvases |= {(up(root * ratio ** k), up(root * ratio ** (1 - k))) for k in range(1 - k_max, k_max + 1)}
        return cls(tuple(sorted(canvases, key=lambda c: (c[0] * c[1], c))), _ladder(max_blocks), merge)

    def canvas_for(self, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
        """The smallest canvas holding every (h, w); past them all, the block's own size
        rounded up to 8 merge units (one more compile, counted, rather than a failed step)."""
        H, W = max(h for h, _ in sizes), max(w for _, w in sizes)
        fits = [c for c in self.canvases if c[0] >= H and c[1] >= W]
        if fits:
            return min(fits, key=lambda c: (c[0] * c[1], c))
        step = 8 * self.merge
        return -(-H // step) * step, -(-W // step) * step

    def slots_for(self, n: int) -> int:
        for s in self.slots:
            if s >= n:
                return s
        return -(-n // self.slots[-1]) * self.slots[-1]


def pack(blocks: Sequence[Block], buckets: CanvasBuckets, *, patch_dim: int, min_slots: int = 0) -> Media | None:
    """The blocks, in order, in the canvas and slot count `buckets` picks (None: no block);
    at least `min_slots` slots, so a batch whose block count varies step to step can keep
    one shape."""
    if not blocks:
        return None
    H, W = buckets.canvas_for([(b.h, b.w) for b in blocks])
    M = buckets.slots_for(max(len(blocks), min_slots))
    dtypes = {b.pixels.dtype for b in blocks}
    if len(dtypes) > 1:  # uint8 are raw pixels, floats normalised: never mixed
        raise ValueError(f"blocks of different pixel dtypes {sorted(map(str, dtypes))}")
    pixels = np.zeros((M, H * W, patch_dim), dtypes.pop())
    valid = np.zeros((M, H * W), bool)
    for m, b in enumerate(blocks):
        if b.pixels.shape != (b.h * b.w, patch_dim):
            raise ValueError(f"block {m}: pixels {b.pixels.shape} for a {b.h}x{b.w} grid")
        at = canvas_slots(b.h, b.w, H, W, buckets.merge)
        pixels[m, at] = b.pixels
        valid[m, at] = True
    return Media(pixels, valid, (H, W))


def token_layout(ids_BxT: np.ndarray, mask_BxT: np.ndarray, row_blocks: Sequence[Sequence[int]],
                 blocks: Sequence[Block], canvas: tuple[int, int] | None, *, video_token_id: int,
                 image_token_id: int, merge: int, tokens_per_second: float,
                 media_end: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(M-RoPE positions [3, B, T] int32, src [B, T] int32) on the host.

    `row_blocks[b]` lists the indices into `blocks` (their canvas slots) of row b's media
    runs, in token order; rows may share blocks (a prompt's G rollouts). src is the merged
    canvas token a media position takes (slot * H*W/merge^2 + merged index), -1 for text.
    Only positions before `media_end` can be media (a completion's tokens are text).
    """
    ids = np.asarray(ids_BxT)
    B, T = ids.shape
    end = T if media_end is None else media_end
    head = np.where(np.arange(T)[None] < end, ids, -1)
    src = np.full((B, T), -1, np.int32)
    vgrid, igrid, secs = [], [], []
    per_slot = 0 if canvas is None else canvas[0] * canvas[1] // (merge * merge)
    for b in range(B):
        kind = np.where(head[b] == video_token_id, 2, np.where(head[b] == image_token_id, 1, 0))
        starts = np.flatnonzero((kind > 0) & (kind != np.pad(kind[:-1], (1, 0))))
        if len(starts) != len(row_blocks[b]):
            raise ValueError(f"row {b} holds {len(starts)} media runs but {len(row_blocks[b])} blocks were given")
        for s, k in zip(starts, row_blocks[b]):
            blk = blocks[k]
            n = blk.h * blk.w // (merge * merge)
            want = 2 if blk.kind == "video" else 1
            if not (kind[s:s + n] == want).all() or (s + n < T and kind[s + n] == want):
                raise ValueError(f"row {b}: the {blk.kind} run at token {s} is not {n} tokens long "
                                 f"(block {k}, {blk.h}x{blk.w} patches)")
            src[b, s:s + n] = k * per_slot + merged_slots(blk.h, blk.w, *canvas, merge)
            (vgrid if blk.kind == "video" else igrid).append((1, blk.h, blk.w))
            if blk.kind == "video":
                secs.append(blk.seconds)
    pos, _ = get_rope_index(head, np.asarray(mask_BxT), np.asarray(vgrid, np.int64) if vgrid else None,
                            np.asarray(secs, np.float32) if vgrid else None, video_token_id=video_token_id,
                            spatial_merge_size=merge, tokens_per_second=tokens_per_second,
                            image_grid_thw=np.asarray(igrid, np.int64) if igrid else None,
                            image_token_id=image_token_id)
    return pos.astype(np.int32), src
