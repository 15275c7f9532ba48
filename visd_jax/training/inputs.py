"""Host-side assembly of model inputs from pipeline batches (NumPy, outside jit).

The pipeline gives right-padded prompts and per-example padded patches; the model wants
left-padded prompts (so every row's last prompt token sits at the same slot and
completions start together), the valid patches of all videos concatenated in row order,
and a concrete `video_grid_thw` with one entry per vision block. Each 2-frame group is its
own block in our prompt layout, so a video of grid (t, h, w) contributes t entries
(1, h, w): the vision tower attends within a temporal patch either way, so the embeddings
are the same, and get_rope_index then sees one grid per block as it expects.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from visd_jax.sampling import Prompts


@dataclasses.dataclass(frozen=True)
class Videos:
    """Concatenated patches and per-block grids for a list of rows (static grid for jit)."""

    pixels: np.ndarray | None  # [N, patch_dim] float32
    grid: tuple[tuple[int, int, int], ...] | None  # one (1, h, w) per vision block
    seconds: np.ndarray | None  # [num_blocks]


def _blocks(grid_thw: np.ndarray) -> list[tuple[int, int, int]]:
    t, h, w = (int(v) for v in grid_thw)
    return [(1, h, w)] * t


def videos_for_rows(batch: dict, rows: Sequence[int]) -> Videos:
    """Patches and block grids of the examples `rows` (indices into the batch), in order.

    A row may repeat (the G samples of one prompt); its video is then repeated too, since
    each sequence of the learner's batch carries its own copy of the video tokens.
    """
    pix, grid, secs = [], [], []
    for b in rows:
        g = batch["grid_thw"][b]
        n = int(np.prod(g))
        if n == 0:
            continue
        pix.append(batch["patches"][b, :n])
        blocks = _blocks(g)
        grid += blocks
        secs += [float(batch["second_per_grid"][b])] * len(blocks)
    if not pix:
        return Videos(None, None, None)
    return Videos(np.concatenate(pix).astype(np.float32), tuple(grid), np.asarray(secs, np.float32))


def concat_videos(parts: Sequence[Videos]) -> Videos:
    """The videos of several row groups, in order (rows without video contribute nothing)."""
    parts = [p for p in parts if p.pixels is not None]
    if not parts:
        return Videos(None, None, None)
    return Videos(np.concatenate([p.pixels for p in parts]), tuple(b for p in parts for b in p.grid),
                  np.concatenate([p.seconds for p in parts]))


def left_pad(ids_list: Sequence[np.ndarray], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Stacks 1-D id arrays right-aligned into [B, length] with an attention mask."""
    out = np.full((len(ids_list), length), pad_id, np.int32)
    mask = np.zeros((len(ids_list), length), np.int32)
    for i, ids in enumerate(ids_list):
        n = len(ids)
        if n > length:
            raise ValueError(f"row {i}: {n} prompt tokens do not fit in {length}")
        if n:
            out[i, length - n:] = ids
            mask[i, length - n:] = 1
    return out, mask


def bucket(n: int, sizes: Sequence[int]) -> int:
    """Smallest size >= n: a handful of static lengths means a handful of compiles.

    Past the largest bucket (a teacher prompt with a long privileged block, say) the length
    is rounded up to a multiple of 128: one more compiled shape rather than a failed step.
    """
    for s in sorted(sizes):
        if s >= n:
            return s
    return -(-n // 128) * 128


def sampler_prompts(batch: dict, rows: Sequence[int], *, length: int, pad_id: int,
                    ids: Sequence[np.ndarray] | None = None) -> Prompts:
    """Left-padded prompts (and their videos) of `rows` for `sampling.generate`."""
    ids = prompt_ids_of(batch, rows) if ids is None else ids
    tok, mask = left_pad(ids, length, pad_id)
    v = videos_for_rows(batch, rows)
    return Prompts(tok, mask, v.pixels, None if v.grid is None else np.asarray(v.grid, np.int32), v.seconds)


def prompt_ids_of(batch: dict, rows: Sequence[int]) -> list[np.ndarray]:
    return [batch["input_ids"][b, : int(batch["attention_mask"][b].sum())] for b in rows]


def sequences(prompt_tok: np.ndarray, prompt_mask: np.ndarray, completion: np.ndarray,
              completion_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[B, L] left-padded prompts + [B, T] completions -> ids and mask [B, L + T]."""
    if len(prompt_tok) != len(completion):
        raise ValueError(f"{len(prompt_tok)} prompts but {len(completion)} completions")
    ids = np.concatenate([prompt_tok, completion.astype(np.int32)], axis=1)
    mask = np.concatenate([prompt_mask, completion_mask.astype(np.int32)], axis=1)
    return ids, mask


def insert_before_last(ids: np.ndarray, marker: int, extra: np.ndarray) -> np.ndarray:
    """`ids` with `extra` inserted before the last occurrence of `marker`.

    Used to append the judge's privileged block to the end of the user turn: the prompt
    ends with `<|im_end|>\\n<|im_start|>assistant\\n`, so inserting before the last
    `<|im_end|>` puts the block after the question without re-rendering the template.
    """
    where = np.flatnonzero(ids == marker)
    if not len(where):
        raise ValueError(f"prompt has no token {marker} to insert the privileged block before")
    i = int(where[-1])
    return np.concatenate([ids[:i], extra.astype(ids.dtype), ids[i:]])
