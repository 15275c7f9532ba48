"""Model input as the releases' RL trainer builds it (`recipe="release"`).

Every sampled frame is its own image block (the frames go to the processor as images, each
repeated to a temporal pair), captioned `Frame {i} at {t}s: ` with t = round(i / fps, 1),
fps the sampling rate nframes / total_frames * video_fps, and followed by a newline; after
the last frame comes `The video is in total {int(n / fps)} seconds.` and a newline, then the
question and, for a coached sample, its hint. For "temporal-spatial free-form QA", the
annotated key-frame images (key_frames[].path) are extra frames: each goes in front of the
first sampled frame whose whole second reaches its time rounded to whole seconds, captioned
with that integer ("Frame 3 at 4s: "); frames are numbered over the merged list and key
frames past the last sampled second are dropped, as in the release. Only those key-frame
images carry a visual prompt there (the release swaps in prompted key-frame images); other
tasks get the hint alone.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from visd_jax import video
from visd_jax.pipeline.records import RecordError
from visd_jax.text import release as rtext

INSERTS_KEY_FRAMES = "temporal-spatial free-form QA"


@dataclasses.dataclass
class FrameList:
    frames: np.ndarray  # [N, H, W, 3] uint8, sampled frames and inserted key frames, in order
    captions: list[str]  # [N] "Frame i at ts: "
    times: np.ndarray  # [N] seconds (a key frame: its annotated time)
    inserted: np.ndarray  # [N] bool: an annotated key-frame image
    key_idx: list  # [N] the key frame's idx for inserted frames, else None
    duration_text: str


def _key_image(kf: dict, size: tuple[int, int], rid: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(kf["path"]) as img:
            return np.asarray(img.convert("RGB").resize(size), np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise RecordError(rid, f"key frame image {kf['path']}: {e}") from e


def frame_list(clip, rec: dict, rid: str) -> FrameList:
    """The frames and captions of one video, merged with its key-frame images where the
    release inserts them."""
    frames = clip.frames
    n, h, w, _ = frames.shape
    total = clip.total_frames or n
    fps = n / max(total, 1e-6) * clip.source_fps  # the release's sample fps
    keys = []
    if rec["task"] == INSERTS_KEY_FRAMES:
        keys = [kf for kf in rec.get("key_frames", []) if isinstance(kf.get("path"), str)]
    out, caps, times, inserted, key_idx = [], [], [], [], []
    i = k = 0
    while i < n:
        if k < len(keys) and int(i / fps) >= round(keys[k]["time"]):
            out.append(_key_image(keys[k], (w, h), rid))
            caps.append(rtext.frame_caption(len(out), round(round(keys[k]["time"]), 1)))
            times.append(float(keys[k]["time"]))
            inserted.append(True)
            key_idx.append(keys[k].get("idx"))
            k += 1
        else:
            out.append(frames[i])
            caps.append(rtext.frame_caption(len(out), round(i / fps, 1)))
            times.append(float(i / fps))
            inserted.append(False)
            key_idx.append(None)
            i += 1
    return FrameList(np.stack(out), caps, np.asarray(times), np.asarray(inserted, bool), key_idx,
                     rtext.duration_sentence(n, fps))


def user_content(fl: FrameList | None, question: str) -> list[dict]:
    """The user turn: captioned image blocks and the duration line (a video), or one image."""
    if fl is None:
        return [{"type": "image"}, {"type": "text", "text": question}]
    content = []
    for cap in fl.captions:
        content += [{"type": "text", "text": cap}, {"type": "image"}, {"type": "text", "text": "\n"}]
    return content + [{"type": "text", "text": fl.duration_text + question}]


def key_boxes(fl: FrameList, rec: dict, max_boxes: int, rid: str):
    """Pixel boxes [N, K, 4], masks, and the prompt's frame mask: the inserted key frames."""
    n, h, w, _ = fl.frames.shape
    boxes = np.zeros((n, max_boxes, 4), np.float32)
    valid = np.zeros((n, max_boxes), bool)
    scale = np.array([w, h, w, h], np.float32)
    items = rec.get("key_items", {})
    for j, idx in enumerate(fl.key_idx):
        objs = items.get(str(idx), {}) if idx is not None else {}
        flat = [b for bxs in objs.values() for b in bxs]
        if len(flat) > max_boxes:
            raise RecordError(rid, f"more than max_boxes={max_boxes} boxes on key frame {idx}")
        for k, b in enumerate(flat):
            boxes[j, k] = np.asarray(b, np.float32) * scale
            valid[j, k] = True
    return boxes, valid, fl.inserted.copy()


def frames_as_images(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each frame an image (repeated to a temporal pair, as the image processor does): uint8
    patches [N*gh*gw, 1176] in image order and the grid (N, gh, gw) of N (1, gh, gw) images."""
    parts = [np.asarray(video.patchify(np.stack([f, f]), normalize=False)[0], np.uint8) for f in frames]
    _, grid = video.patchify(np.stack([frames[0], frames[0]]), normalize=False)
    gh, gw = int(grid[1]), int(grid[2])
    return np.concatenate(parts), np.asarray([len(frames), gh, gw], np.int32)
