"""`RolloutBatch`: the one batch every training program takes, and the run context that builds it.

Rows are prompt + completion sequences (a rollout, an SFT target, a self-distillation row);
their media are vision blocks packed into bucketed canvases (`models.canvas`), each
prompt's blocks ONCE however many rows read them (the G rollouts of a prompt point at the
same slots through `src`). Shapes come from a few buckets, so a program compiles once per
bucket, and the batch goes to jit whole: nothing reads it by position.

    ctx = RunContext.create(model.config, special_ids, token_buckets=..., vision=CanvasBuckets(..))
    batch = build_batch(ctx, prompt_ids, tokens, tmask, media_of_row, media)
    batch = place(batch, mesh)            # every leaf on its logical axes, one call
    minibatch = batch.take(idx)           # rows by index, on the host or inside jit
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np
from flax import struct

from visd_jax.models.canvas import Block, CanvasBuckets, Media, pack, token_layout
from visd_jax.parallel import global_array, named_sharding
from visd_jax.text import SpecialIds
from visd_jax.training import inputs


@struct.dataclass
class RolloutBatch:
    ids: jax.Array  # [B, L + T] int32: left-padded prompt, then the completion
    mask: jax.Array  # [B, L + T] int32
    targets: jax.Array  # [B, T] int32: the completion tokens (what the log-probs score)
    tmask: jax.Array  # [B, T] int32
    positions: jax.Array  # [3, B, L + T] int32: M-RoPE positions from the exact grids
    src: jax.Array  # [B, L + T] int32: merged canvas token of a media position, else -1
    media: Media | None  # every prompt's blocks once: [M, H*W, patch_dim]

    @property
    def rows(self) -> int:
        return int(self.ids.shape[0])

    def take(self, rows) -> "RolloutBatch":
        """Rows `rows` (host or traced int indices) with exactly their media: every row's
        `src` still points into the same canvases, which travel whole."""
        return self.replace(ids=self.ids[rows], mask=self.mask[rows], targets=self.targets[rows],
                            tmask=self.tmask[rows], positions=self.positions[:, rows], src=self.src[rows])


# The batch's logical axes, declared once: `place` reads them for every leaf.
AXES = {"ids": ("batch", "seq"), "mask": ("batch", "seq"), "targets": ("batch", "seq"),
        "tmask": ("batch", "seq"), "positions": (None, "batch", "seq"), "src": ("batch", "seq"),
        "pixels": ("frames", "patches", "pixels"), "valid": ("frames", "patches")}


def place(batch: RolloutBatch, mesh) -> RolloutBatch:
    """Host batch (the same on every process) -> global arrays sharded by `AXES`."""
    put = lambda x, name: global_array(x, named_sharding(mesh, AXES[name], np.shape(x)))  # noqa: E731
    m = batch.media
    media = None if m is None else m.replace(pixels=put(m.pixels, "pixels"), valid=put(m.valid, "valid"))
    return batch.replace(media=media, **{f: put(getattr(batch, f), f)
                                         for f in ("ids", "mask", "targets", "tmask", "positions", "src")})


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What every host-side builder of a run needs, fixed when the run starts."""

    special: SpecialIds
    token_buckets: tuple[int, ...]  # prompt lengths
    vision: CanvasBuckets
    patch_dim: int
    tokens_per_second: float
    tokenizer: object = dataclasses.field(default=None, compare=False)

    @property
    def pad_id(self) -> int:
        return self.special.pad

    @classmethod
    def create(cls, config, special: SpecialIds, *, token_buckets, vision: CanvasBuckets, tokenizer=None):
        """From the model config (patch size, rope) and the tokenizer's ids."""
        v = config.vision
        return cls(special, tuple(token_buckets), vision, v.patch_dim, float(v.tokens_per_second), tokenizer)

    def layout(self, ids, mask, row_blocks, blocks, media: Media | None, media_end=None):
        return token_layout(ids, mask, row_blocks, blocks, None if media is None else media.canvas,
                            video_token_id=self.special.video_pad, image_token_id=self.special.image_pad,
                            merge=self.vision.merge, tokens_per_second=self.tokens_per_second,
                            media_end=media_end)


def build_batch(ctx: RunContext, prompt_ids: Sequence[np.ndarray], tokens: np.ndarray, tmask: np.ndarray,
                media_of_row: Sequence[int], media: Sequence[Sequence[Block]],
                prompt_len: int | None = None, min_slots: int = 0, packed: Media | None = None) -> RolloutBatch:
    """Row r = prompt `prompt_ids[r]` followed by completion `tokens[r]` (mask `tmask[r]`),
    reading the blocks `media[media_of_row[r]]`: rows sharing a media group (a prompt's G
    rollouts, their teacher prompts) share its canvas slots. The prompt width is the
    smallest token bucket that holds every prompt (or `prompt_len`); the media take at least
    `min_slots` canvas slots. `packed`: these groups' media already packed (the student
    batch's, for the teacher's rows of the same rollouts): reused, not copied again."""
    groups = [int(g) for g in media_of_row]
    if not len(prompt_ids) == len(groups) == len(tokens):
        raise ValueError(f"{len(prompt_ids)} prompts, {len(groups)} media groups and {len(tokens)} completions "
                         "must be one per row")
    flat, first = [], {}
    for g in sorted(set(groups)):  # each group's blocks once
        first[g] = len(flat)
        flat += list(media[g])
    if packed is None:
        packed = pack(flat, ctx.vision, patch_dim=ctx.patch_dim, min_slots=min_slots)
    L = prompt_len or inputs.bucket(max(len(x) for x in prompt_ids), ctx.token_buckets)
    ptok, pmask = inputs.left_pad(prompt_ids, L, ctx.pad_id)
    ids, mask = inputs.sequences(ptok, pmask, tokens, tmask)
    row_blocks = [list(range(first[g], first[g] + len(media[g]))) for g in groups]
    positions, src = ctx.layout(ids, mask, row_blocks, flat, packed, media_end=L)
    return RolloutBatch(ids, mask, np.asarray(tokens, np.int32), np.asarray(tmask, np.int32), positions, src, packed)


def prompt_batch(ctx: RunContext, prompt_ids: Sequence[np.ndarray], media: Sequence[Sequence[Block]]) -> RolloutBatch:
    """Prompts alone (no completion): the sampler's input, prompt p reading `media[p]`."""
    empty = np.zeros((len(prompt_ids), 0), np.int32)
    return build_batch(ctx, prompt_ids, empty, empty, range(len(prompt_ids)), media)
