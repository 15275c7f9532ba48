"""Padding examples into a few static shape buckets, so jit compiles a handful of programs.

A batch takes the smallest token bucket >= its longest prompt and the smallest patch
bucket >= its largest video; frame-level fields are padded to `max_frames`. Padding:
input ids with the tokenizer's pad id (attention_mask 0), patches with zeros (patch_mask 0),
missing examples of a short final batch with example_mask 0.
"""
from __future__ import annotations

import bisect
import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Buckets:
    tokens: tuple[int, ...] = (512, 1024, 2048, 4096)
    patches: tuple[int, ...] = (1024, 2048, 4096, 8192, 16384)

    def __post_init__(self):
        for name in ("tokens", "patches"):
            v = getattr(self, name)
            if not v or list(v) != sorted(set(v)) or v[0] < 1:
                raise ValueError(f"Buckets.{name} must be increasing positive sizes, got {v}")

    @staticmethod
    def pick(sizes: tuple[int, ...], need: int, what: str) -> int:
        i = bisect.bisect_left(sizes, need)
        if i == len(sizes):
            raise ValueError(f"{need} {what} exceed the largest bucket {sizes[-1]}")
        return sizes[i]


def pad_batch(examples: list[dict], *, batch_size: int, buckets: Buckets,
              max_frames: int, pad_id: int) -> dict:
    """Stacks up to `batch_size` examples into one static-shape batch (numpy)."""
    if not 0 < len(examples) <= batch_size:
        raise ValueError(f"pad_batch: got {len(examples)} examples for batch_size {batch_size}")
    L = Buckets.pick(buckets.tokens, max(len(e["input_ids"]) for e in examples), "tokens")
    P = Buckets.pick(buckets.patches, max(len(e["patches"]) for e in examples), "patches")
    B, F = batch_size, max_frames
    dim, pix_dtype = examples[0]["patches"].shape[1], examples[0]["patches"].dtype
    K = examples[0]["boxes"].shape[1]
    out = {
        "input_ids": np.full((B, L), pad_id, np.int32),
        "attention_mask": np.zeros((B, L), np.int32),
        "patches": np.zeros((B, P, dim), pix_dtype),  # uint8 pixels from make_example
        "patch_mask": np.zeros((B, P), bool),
        "grid_thw": np.zeros((B, 3), np.int32),
        "frame_times": np.zeros((B, F), np.float32),
        "frame_mask": np.zeros((B, F), bool),
        "key_frame_mask": np.zeros((B, F), bool),
        "boxes": np.zeros((B, F, K, 4), np.float32),
        "box_valid": np.zeros((B, F, K), bool),
        "second_per_grid": np.zeros((B,), np.float32),
        "example_mask": np.zeros((B,), bool),
    }
    meta = []
    for b, e in enumerate(examples):
        n, p, t = len(e["input_ids"]), len(e["patches"]), len(e["frame_times"])
        if t > F:
            raise ValueError(f"example {e['meta']['id']}: {t} frames > max_frames {F}")
        out["input_ids"][b, :n] = e["input_ids"]
        out["attention_mask"][b, :n] = 1
        out["patches"][b, :p] = e["patches"]
        out["patch_mask"][b, :p] = True
        out["grid_thw"][b] = e["grid_thw"]
        out["frame_times"][b, :t] = e["frame_times"]
        out["frame_mask"][b, :t] = True
        out["key_frame_mask"][b, :t] = e["key_frame_mask"]
        out["boxes"][b, :t] = e["boxes"]
        out["box_valid"][b, :t] = e["box_valid"]
        out["second_per_grid"][b] = e["second_per_grid"]
        out["example_mask"][b] = True
        meta.append(e["meta"])
    out["meta"] = meta
    return out
