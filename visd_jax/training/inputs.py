"""Host-side assembly of model inputs from pipeline batches (NumPy, outside jit).

The pipeline gives right-padded prompts and per-example padded patches; the model wants
left-padded prompts (so every row's last prompt token sits at the same slot and
completions start together) and each example's media as vision blocks: each 2-frame group
is its own block in our prompt layout, so a video of grid (t, h, w) is t blocks (1, h, w)
(the vision tower attends within a temporal patch either way, and M-RoPE sees one grid per
block as it expects). `training.batch` packs the blocks into bucketed canvases.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from visd_jax.models.canvas import Block

IMAGE_TASK = "visual QA"  # the one image task (SPEC 1); every other task is a video


def is_image_row(batch: dict, b: int) -> bool:
    return batch["meta"][b].get("task") == IMAGE_TASK if "meta" in batch else False


def blocks_of_row(batch: dict, b: int) -> list[Block]:
    """The vision blocks of example `b`, in prompt order: a video of grid (t, h, w) is t
    temporal patches (1, h, w); an image (visual QA) one image block; the release recipe's
    frames (meta media="frames") t image blocks. Pixels stay in the pipeline's dtype (uint8:
    the vision tower normalises them; a float cast would change what they mean)."""
    t, h, w = (int(v) for v in batch["grid_thw"][b])
    n = t * h * w
    if n == 0:
        return []
    pix = batch["patches"][b, :n].reshape(t, h * w, -1)
    if batch["meta"][b].get("media") == "frames" or is_image_row(batch, b):
        return [Block(pix[i], h, w, "image") for i in range(t)]
    sec = float(batch["second_per_grid"][b])
    return [Block(pix[i], h, w, "video", sec) for i in range(t)]


def hf_media(blocks: Sequence[Block]) -> dict:
    """transformers' keyword arguments (exact grids, one per block, videos and images apart)
    for blocks in token order: the reference form the packed one is checked against."""
    out = {}
    for kind, names in (("video", ("pixel_values_videos", "video_grid_thw")), ("image", ("pixel_values",
                                                                                           "image_grid_thw"))):
        mine = [b for b in blocks if b.kind == kind]
        if mine:
            out[names[0]] = np.concatenate([b.pixels for b in mine])
            out[names[1]] = np.asarray([(1, b.h, b.w) for b in mine], np.int64)
    if "video_grid_thw" in out:
        out["second_per_grid_ts"] = np.asarray([b.seconds for b in blocks if b.kind == "video"], np.float32)
    return out


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
