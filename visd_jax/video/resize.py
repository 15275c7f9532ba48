"""Qwen2.5-VL frame geometry: `smart_resize` and the frame-count rule `smart_nframes`.

Both follow qwen-vl-utils (`vision_process.py`, the reference used by Qwen2.5-VL training
and by the VisionCoach / VISD releases); transformers' Qwen2-VL processors use the same rule.
"""
from __future__ import annotations

import math

import numpy as np

IMAGE_FACTOR = 28  # spatial patch 14 x 2x2 merge
FRAME_FACTOR = 2  # temporal patch
MAX_RATIO = 200


def _round_by(x: float, f: int) -> int:
    return round(x / f) * f


def _ceil_by(x: float, f: int) -> int:
    return math.ceil(x / f) * f


def _floor_by(x: float, f: int) -> int:
    return math.floor(x / f) * f


def smart_resize(
    height: int,
    width: int,
    *,
    factor: int = IMAGE_FACTOR,
    min_pixels: int = 4 * 28 * 28,
    max_pixels: int = 128 * 28 * 28,
) -> tuple[int, int]:
    """Target (h, w): multiples of `factor`, h*w in [min_pixels, max_pixels], aspect kept.

    Qwen2.5-VL rule: h' = max(f, round(h/f)*f), w' likewise; if h'w' > max_pixels,
    beta = sqrt(h*w/max_pixels), h' = floor(h/beta/f)*f, w' = floor(w/beta/f)*f; if
    h'w' < min_pixels, beta = sqrt(min_pixels/(h*w)), h' = ceil(h*beta/f)*f, w' likewise.
    An aspect ratio above 200 is rejected (as in qwen-vl-utils).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"smart_resize: height and width must be positive, got {height}x{width}")
    if factor <= 0:
        raise ValueError(f"smart_resize: factor must be positive, got {factor}")
    if not 0 < min_pixels <= max_pixels:
        raise ValueError(
            f"smart_resize: need 0 < min_pixels <= max_pixels, got {min_pixels}, {max_pixels}"
        )
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_RATIO:
        raise ValueError(
            f"smart_resize: absolute aspect ratio must be smaller than {MAX_RATIO}, got {ratio}"
        )
    h_bar = max(factor, _round_by(height, factor))
    w_bar = max(factor, _round_by(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, _floor_by(height / beta, factor))
        w_bar = max(factor, _floor_by(width / beta, factor))
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = _ceil_by(height * beta, factor)
        w_bar = _ceil_by(width * beta, factor)
    return h_bar, w_bar


def smart_nframes(
    total_frames: int,
    source_fps: float,
    *,
    fps: float = 2.0,
    min_frames: int = 4,
    max_frames: int = 16,
) -> int:
    """Number of frames to sample, qwen-vl-utils' `smart_nframes` (fps mode).

    n = total/source_fps * fps, clamped to [ceil2(min_frames), floor2(max_frames)] and to
    total, then floored to an even number. Raises ValueError when n < 2 (fewer than two
    source frames), as qwen-vl-utils does.
    """
    if total_frames <= 0:
        raise ValueError(f"smart_nframes: total_frames must be positive, got {total_frames}")
    if not source_fps > 0:
        raise ValueError(f"smart_nframes: source_fps must be positive, got {source_fps}")
    if not fps > 0:
        raise ValueError(f"smart_nframes: fps must be positive, got {fps}")
    lo = _ceil_by(min_frames, FRAME_FACTOR)
    hi = _floor_by(min(max_frames, total_frames), FRAME_FACTOR)
    n = total_frames / source_fps * fps
    n = _floor_by(min(min(max(n, lo), hi), total_frames), FRAME_FACTOR)
    if not FRAME_FACTOR <= n <= total_frames:
        raise ValueError(
            f"smart_nframes: nframes should be in [{FRAME_FACTOR}, {total_frames}], got {n}"
            f" (total_frames={total_frames}, min_frames={min_frames}, max_frames={max_frames})"
        )
    return n


def sample_indices(total_frames: int, nframes: int) -> np.ndarray:
    """Source frame indices round(linspace(0, total-1, n)), ties to even as torch.round."""
    return np.round(np.linspace(0, total_frames - 1, nframes)).astype(np.int64)
