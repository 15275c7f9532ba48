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
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from visd_jax.sampling import Prompts

IMAGE_TASK = "visual QA"  # the one image task (SPEC 1); every other task is a video


class MediaGrid(NamedTuple):
    """The static grid of a batch holding images: one (1, h, w) per vision block, and per
    block whether it is a video's temporal patch or an image ("video" / "image"). A batch
    of videos only keeps the plain tuple of blocks as its grid (the older, common key)."""

    blocks: tuple[tuple[int, int, int], ...]
    kinds: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Videos:
    """Concatenated patches and the static grid for a list of rows (videos and images).

    Patches of every vision block, video or image, in row order; `seconds` holds one entry
    per VIDEO block. `grid` is the plain tuple of blocks when there is no image, else a
    `MediaGrid`; `split_media` turns (pixels, seconds, grid) into model arguments.
    """

    # [N, patch_dim]: uint8 pixels from the pipeline (the vision tower normalises them) or
    # float32 already-normalised values; never cast between the two, which would change
    # what they mean.
    pixels: np.ndarray | None
    grid: tuple[tuple[int, int, int], ...] | MediaGrid | None
    seconds: np.ndarray | None  # [num_video_blocks]


def _blocks(grid_thw: np.ndarray) -> list[tuple[int, int, int]]:
    t, h, w = (int(v) for v in grid_thw)
    return [(1, h, w)] * t


def _parts(grid) -> tuple[list, list]:
    if grid is None:
        return [], []
    if isinstance(grid, MediaGrid):
        return list(grid.blocks), list(grid.kinds)
    return list(grid), ["video"] * len(grid)


def _grid(blocks, kinds):
    if not blocks:
        return None
    return tuple(blocks) if all(k == "video" for k in kinds) else MediaGrid(tuple(blocks), tuple(kinds))


def _concat_pixels(arrays) -> np.ndarray:
    """Concatenate patch arrays of one kind: NumPy would turn uint8 pixels mixed with float
    patches into floats that the model takes as normalised."""
    kinds = {a.dtype for a in arrays}
    if len(kinds) > 1:
        raise ValueError(f"patches of different dtypes {sorted(map(str, kinds))} cannot be "
                         "batched together: uint8 are raw pixels, floats are normalised")
    return np.concatenate(arrays)


def is_image_row(batch: dict, b: int) -> bool:
    return batch["meta"][b].get("task") == IMAGE_TASK if "meta" in batch else False


def videos_for_rows(batch: dict, rows: Sequence[int]) -> Videos:
    """Patches and block grids of the examples `rows` (indices into the batch), in order.

    A row may repeat (the G samples of one prompt); its video is then repeated too, since
    each sequence of the learner's batch carries its own copy of the video tokens. An image
    row (visual QA) is one image block: grid (1, h, w), no seconds.
    """
    pix, blocks, kinds, secs = [], [], [], []
    for b in rows:
        g = batch["grid_thw"][b]
        n = int(np.prod(g))
        if n == 0:
            continue
        pix.append(batch["patches"][b, :n])
        if batch["meta"][b].get("media") == "frames":  # release recipe: every frame an image
            blocks += [(1, int(g[1]), int(g[2]))] * int(g[0])
            kinds += ["image"] * int(g[0])
            continue
        if is_image_row(batch, b):
            blocks.append((1, int(g[1]), int(g[2])))
            kinds.append("image")
            continue
        bl = _blocks(g)
        blocks += bl
        kinds += ["video"] * len(bl)
        secs += [float(batch["second_per_grid"][b])] * len(bl)
    if not pix:
        return Videos(None, None, None)
    return Videos(_concat_pixels(pix), _grid(blocks, kinds),
                  np.asarray(secs, np.float32) if secs else None)


def concat_videos(parts: Sequence[Videos]) -> Videos:
    """The media of several row groups, in order (rows without media contribute nothing)."""
    parts = [p for p in parts if p.pixels is not None]
    if not parts:
        return Videos(None, None, None)
    blocks, kinds = [], []
    for p in parts:
        b, k = _parts(p.grid)
        blocks += b
        kinds += k
    secs = [p.seconds for p in parts if p.seconds is not None]
    return Videos(_concat_pixels([p.pixels for p in parts]), _grid(blocks, kinds),
                  np.concatenate(secs) if secs else None)


def split_media(pixels, seconds, grid) -> dict:
    """Model keyword arguments for (pixels, seconds, grid): videos and images apart.

    Works on NumPy (host) and inside jit (static slices of a traced pixel array): the grid
    is static, so each block's patch range is known when tracing.
    """
    if grid is None or pixels is None:
        return {}
    blocks, kinds = _parts(grid)
    if all(k == "video" for k in kinds):
        return dict(pixel_values_videos=pixels, video_grid_thw=np.asarray(blocks, np.int64),
                    second_per_grid_ts=seconds)
    xp = np if isinstance(pixels, np.ndarray) else jnp
    vid, img, start = [], [], 0
    for (t, h, w), k in zip(blocks, kinds):
        n = t * h * w
        (vid if k == "video" else img).append(pixels[start:start + n])
        start += n
    vblocks = [b for b, k in zip(blocks, kinds) if k == "video"]
    iblocks = [b for b, k in zip(blocks, kinds) if k == "image"]
    out = {}
    if vblocks:
        out.update(pixel_values_videos=xp.concatenate(vid), video_grid_thw=np.asarray(vblocks, np.int64),
                   second_per_grid_ts=seconds)
    out.update(pixel_values=xp.concatenate(img), image_grid_thw=np.asarray(iblocks, np.int64))
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


def sampler_prompts(batch: dict, rows: Sequence[int], *, length: int, pad_id: int,
                    ids: Sequence[np.ndarray] | None = None) -> Prompts:
    """Left-padded prompts (and their videos) of `rows` for `sampling.generate`."""
    ids = prompt_ids_of(batch, rows) if ids is None else ids
    tok, mask = left_pad(ids, length, pad_id)
    v = videos_for_rows(batch, rows)
    m = split_media(v.pixels, v.seconds, v.grid)
    grid = lambda k: None if m.get(k) is None else np.asarray(m[k], np.int32)  # noqa: E731
    return Prompts(tok, mask, m.get("pixel_values_videos"), grid("video_grid_thw"), m.get("second_per_grid_ts"),
                   pixel_values=m.get("pixel_values"), image_grid_thw=grid("image_grid_thw"))


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
