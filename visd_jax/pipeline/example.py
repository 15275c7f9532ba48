"""One record -> one unpadded model example (runs inside grain workers).

decode + sample + resize (`visd_jax.video.load_video`) -> check the record against the
video -> optional visual prompt on the key frames (`visd_jax.prompts.apply`) -> patchify ->
chat template. The user turn is

    The video lasts {D} seconds.\\n
    Frame 1 at {t0}s: <|vision_start|><|video_pad|> x (gh*gw/4) <|vision_end|>
    Frame 2 at {t2}s: ...                          (one block per temporal patch of 2 frames)
    \\n{question}{hint}

so each frame group is its own vision block (as Qwen3-VL lays out timestamps); the whole
video keeps one `grid_thw` = (gt, gh, gw), and block g holds the merged tokens of
temporal slice g. Images use one `<|image_pad|>` block (the image repeated to 2 frames).
"""
from __future__ import annotations

import dataclasses
import functools
import io

import numpy as np

from visd_jax import text, video
from visd_jax.prompt_kinds import KINDS as PROMPT_KINDS
from visd_jax.pipeline.records import RecordError, check_against_video, check_schema, record_id

MERGE = 4  # 2x2 spatial merge: merged tokens per frame group = gh * gw / 4
TEMPORAL_PATCH = 2
RECIPES = ("ours", "release")


@dataclasses.dataclass(frozen=True)
class ExampleConfig:
    """How a record becomes model input (SPEC section 8 defaults)."""

    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 16
    max_pixels: int = 128 * 28 * 28
    min_pixels: int = 4 * 28 * 28
    # "": the example as it is. A coaching kind (raw | circle | darken | numbers | attention):
    # that visual prompt on the key frames and its hint after the question (raw: the frames
    # as they are, with the raw hint); meta["prompt"] names the kind applied
    prompt: str = ""
    max_boxes: int = 8  # per frame, after padding; more key boxes are an error
    max_tokens: int = 4096  # examples longer than this (or max_patches) are bad records
    max_patches: int = 16384
    tokenizer_dir: str | None = None
    # "ours": one vision block per 2-frame temporal patch; "release": every frame its own
    # image block with the release's captions, prompts and hints (pipeline/release_input.py)
    recipe: str = "ours"
    image_min_pixels: int | None = None  # None: min_pixels / max_pixels (the release: 3136,
    image_max_pixels: int | None = None  # 200704 for images; 100352, 105369 for video frames)
    max_key_frames: int = 8  # release: key-frame images inserted into a video, at most
    # FFmpeg threads per decode. None: the loader shares the cores among the decoders it
    # runs at once (workers x read threads); 0: FFmpeg's own count; n: exactly n.
    decode_threads: int | None = None
    # "": each task's own system prompt (text/system.py, or the release's); else this one for
    # every record (a benchmark's protocol: V-STaR asks with "You are a helpful assistant.")
    system: str = ""

    def __post_init__(self):
        if self.prompt not in ("",) + PROMPT_KINDS:
            raise ValueError(f"prompt must be '' (none) or one of {PROMPT_KINDS}, got {self.prompt!r}")
        if not 2 <= self.min_frames <= self.max_frames or self.max_frames % 2:
            raise ValueError(f"need 2 <= min_frames <= max_frames with max_frames even, got "
                             f"{self.min_frames}, {self.max_frames}")
        if self.max_boxes < 1:
            raise ValueError(f"max_boxes must be >= 1, got {self.max_boxes}")
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {RECIPES}, got {self.recipe!r}")
        if self.decode_threads is not None and self.decode_threads < 0:
            raise ValueError(f"decode_threads must be None or >= 0, got {self.decode_threads}")


    @property
    def frame_slots(self) -> int:
        """Frames per example after padding: sampled ones plus the release's key frames."""
        return self.max_frames + (self.max_key_frames if self.recipe == "release" else 0)


@functools.lru_cache(maxsize=None)
def _jit_apply(kind: str):
    import jax

    from visd_jax import prompts

    return jax.jit(functools.partial(prompts.apply, kind))


BOX_KINDS = ("circle", "darken", "attention")  # drawn from the key objects' boxes


def _cover_patches(boxes, valid, key_mask, patch: int):
    """Key frames widened to whole temporal patches: the vision tower merges a patch's
    frames into one token, so a prompt on one frame of the pair would be diluted by its
    unprompted twin. A partner without boxes of its own takes its twin's."""
    boxes, valid, key_mask = boxes.copy(), valid.copy(), key_mask.copy()
    for a in range(0, len(key_mask) - patch + 1, patch):
        pair = slice(a, a + patch)
        if not key_mask[pair].any():
            continue
        key_mask[pair] = True
        donor = next((a + j for j in range(patch) if valid[a + j].any()), None)
        for j in range(patch):
            if donor is not None and not valid[a + j].any():
                boxes[a + j], valid[a + j] = boxes[donor], valid[donor]
    return boxes, valid, key_mask


def prompt_frames(frames, kind: str, boxes, valid, key_mask, *, numbers, numbers_on=None):
    """(frames with visual prompt `kind`, the kind applied).

    Box prompts go on the key frames that have boxes; a key frame without boxes stays as it
    is (darkening it whole would hide everything), and with no boxed key frame at all the
    example is `raw`, so the hint never describes a prompt that is not there (the release:
    raw when a record has no key_items). Frame numbers need no boxes: on `numbers_on` (None:
    every frame)."""
    if kind == "raw":
        return frames, "raw"
    if kind == "numbers":
        if numbers_on is not None and not numbers_on.any():
            return frames, "raw"
        out = np.asarray(_jit_apply(kind)(frames, numbers=numbers))
        return (out if numbers_on is None else np.where(numbers_on[:, None, None, None], out, frames)), kind
    on = key_mask & valid.any(axis=1)
    if not on.any():
        return frames, "raw"
    return np.asarray(_jit_apply(kind)(frames, boxes=boxes, box_mask=valid, frame_mask=on, numbers=numbers)), kind


def _load_image(media, rid: str, cfg: ExampleConfig) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(media) if isinstance(media, bytes) else media)
        img = img.convert("RGB")
    except (OSError, UnidentifiedImageError) as e:
        raise RecordError(rid, f"undecodable image: {e}") from e
    h, w = video.smart_resize(img.height, img.width, min_pixels=cfg.image_min_pixels or cfg.min_pixels,
                              max_pixels=cfg.image_max_pixels or cfg.max_pixels)
    arr = np.asarray(img.resize((w, h), Image.BICUBIC), np.uint8)
    return np.stack([arr, arr])  # one temporal patch


def _key_boxes(rec: dict, times: np.ndarray, width: int, height: int, source_fps: float,
               max_boxes: int, rid: str):
    """Pixel boxes [T, K, 4] on the sampled frames nearest each key frame, and masks.

    A key frame lands on the sampled frame closest in time; its normalised boxes are
    scaled by the model frame size (SPEC section 1: GT boxes are scaled by image_size).
    """
    t = len(times)
    boxes = np.zeros((t, max_boxes, 4), np.float32)
    box_valid = np.zeros((t, max_boxes), bool)
    key_mask = np.zeros((t,), bool)
    when = {kf["idx"]: kf["time"] for kf in rec.get("key_frames", [])}
    for kf in rec.get("key_frames", []):
        key_mask[int(np.argmin(np.abs(times - kf["time"])))] = True
    scale = np.array([width, height, width, height], np.float32)
    for frame, objs in rec.get("key_items", {}).items():
        tt = when.get(int(frame), int(frame) / source_fps if source_fps > 0 else 0.0)
        j = int(np.argmin(np.abs(times - tt)))
        key_mask[j] = True
        for name, bxs in objs.items():
            for b in bxs:
                k = int(box_valid[j].sum())
                if k >= max_boxes:
                    raise RecordError(rid, f"more than max_boxes={max_boxes} key boxes land "
                                           f"on sampled frame {j}")
                boxes[j, k] = np.asarray(b, np.float32) * scale
                box_valid[j, k] = True
    return boxes, box_valid, key_mask


def _user_content(rec: dict, group_times: list[float] | None, question: str):
    if group_times is None:
        return [{"type": "image"}, {"type": "text", "text": question}]
    content = [{"type": "text", "text": text.duration_text(rec["_duration"]) + "\n"}]
    for g, t in enumerate(group_times):
        content += [{"type": "text", "text": text.frame_text(g + 1, t)}, {"type": "video"}]
    content.append({"type": "text", "text": "\n" + question})
    return content


def tokenize_prompt(rec: dict, *, task: str, question: str, group_times, tokens_per_group: int,
                    tokenizer, system: str = "") -> np.ndarray:
    """Chat-template ids with each single pad token expanded to `tokens_per_group` copies."""
    messages = [{"role": "system", "content": system or text.system_prompt(task)},
                {"role": "user", "content": _user_content(rec, group_times, question)}]
    return _template_ids(messages, tokenizer, "<|image_pad|>" if group_times is None else "<|video_pad|>",
                         blocks=1 if group_times is None else len(group_times),
                         tokens_per_block=tokens_per_group, rid=record_id(rec))


def _template_ids(messages, tokenizer, pad_token: str, *, blocks: int, tokens_per_block: int,
                  rid: str) -> np.ndarray:
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = np.asarray(tokenizer(rendered, add_special_tokens=False)["input_ids"], np.int32)
    # the loaded tokenizer's own pad id: a checkpoint's is 151656, the tiny one's 1013
    pad = tokenizer.convert_tokens_to_ids(pad_token)
    n_blocks = int((ids == pad).sum())
    if n_blocks != blocks:  # a question containing a literal pad token string, say
        raise RecordError(rid, f"prompt has {n_blocks} vision blocks, expected {blocks}")
    reps = np.where(ids == pad, tokens_per_block, 1)
    return np.repeat(ids, reps)


def make_example(item: dict, cfg: ExampleConfig) -> dict:
    """The unpadded example of one source item; raises RecordError for a bad record."""
    rec = item.get("record")
    rid = record_id(rec, item.get("index"))
    if item.get("error"):
        raise RecordError(rid, item["error"])
    check_schema(rec, item.get("index"))
    media = item.get("media")
    if media is None:
        raise RecordError(rid, "no media (video/image) for this record")
    is_image = rec["task"] == "visual QA"
    if is_image:
        frames = _load_image(media, rid, cfg)
        times = np.zeros((2,), np.float64)
        source_fps, duration = 1.0, 0.0
        for kf in rec.get("key_frames", []):
            if kf["idx"] != 0:
                raise RecordError(rid, f"key frame idx {kf['idx']} on an image (only 0 exists)")
        for frame in rec.get("key_items", {}):
            if int(frame) != 0:
                raise RecordError(rid, f"key_items frame {frame} on an image (only 0 exists)")
    else:
        try:
            clip = video.load_video(media, fps=cfg.fps, min_frames=cfg.min_frames,
                                    max_frames=cfg.max_frames, max_pixels=cfg.max_pixels,
                                    min_pixels=cfg.min_pixels, threads=cfg.decode_threads or 0)
        except video.VideoError as e:
            raise RecordError(rid, f"undecodable video: {e}") from e
        frames, times = clip.frames, clip.timestamps
        source_fps, duration = clip.source_fps, clip.duration
        total = (int(clip.indices[-1]) + 1 if clip.indices is not None
                 else int(round(duration * source_fps)))
        check_against_video(rec, duration=duration, num_frames=total,
                            frame_interval=1.0 / max(source_fps, 1e-6))
    if cfg.recipe == "release":
        return _release_example(rec, rid, item.get("index"), cfg, None if is_image else clip,
                                frames if is_image else None)
    t, h, w, _ = frames.shape
    boxes, box_valid, key_mask = _key_boxes(rec, times, w, h, source_fps, cfg.max_boxes, rid)
    question, kind = rec["question"], cfg.prompt
    if kind:
        from visd_jax import prompts

        group_no = np.arange(t) // TEMPORAL_PATCH + 1  # the number matches "Frame i" text
        pb, pv, pk = _cover_patches(boxes, box_valid, key_mask, TEMPORAL_PATCH)
        frames, kind = prompt_frames(frames, kind, pb, pv, pk, numbers=group_no)
        question = question + prompts.hint(kind)
    # Raw uint8 patches: a quarter of float32's bytes through worker pipes, host memory and
    # the host-to-device copy; the vision tower normalises them on the device.
    patches, grid = video.patchify(frames, normalize=False)
    patches, grid = np.asarray(patches, np.uint8), np.asarray(grid, np.int32)
    gt, gh, gw = (int(v) for v in grid)
    group_times = None if is_image else [float(times[TEMPORAL_PATCH * g]) for g in range(gt)]
    from visd_jax.text import load_tokenizer

    ids = tokenize_prompt({**rec, "_duration": duration}, task=rec["task"], question=question,
                          group_times=group_times, tokens_per_group=gh * gw // MERGE,
                          tokenizer=load_tokenizer(cfg.tokenizer_dir), system=cfg.system)
    _check_size(ids, patches, cfg, rid)
    spg = (float(times[-1] - times[0]) / (t - 1) * TEMPORAL_PATCH) if t > 1 and not is_image else 0.0
    return {
        "input_ids": ids,
        "patches": patches,
        "grid_thw": grid,
        "frame_times": times.astype(np.float32),
        "key_frame_mask": key_mask,
        "boxes": boxes,
        "box_valid": box_valid,
        "second_per_grid": np.float32(spg),
        "meta": _meta(rec, rid, item.get("index"), question, w, h, duration, kind, is_image),
    }


def _check_size(ids, patches, cfg: ExampleConfig, rid: str) -> None:
    if len(ids) > cfg.max_tokens or len(patches) > cfg.max_patches:
        raise RecordError(rid, f"{len(ids)} tokens / {len(patches)} patches exceed the largest "
                               f"bucket ({cfg.max_tokens} / {cfg.max_patches})")


def _meta(rec: dict, rid: str, index, question: str, w: int, h: int, duration: float, prompt: str,
          is_image: bool) -> dict:
    """What the host side reads of an example (rewards, traces, the coach's rebuild by `index`)."""
    return {"id": rid, "index": index, "task": rec["task"], "question": question, "answer": rec["answer"],
            # Video boxes are normalised, so image_size is the model frame they are scaled to.
            # A visual-QA answer box is in original-image pixels: keep that size and give the
            # model's as image_size_refine, which the rewards rescale by (the release's fields).
            **({"image_size": list(rec.get("image_size") or [int(w), int(h)]),
                "image_size_refine": [int(w), int(h)]} if is_image else {"image_size": [int(w), int(h)]}),
            "duration": float(duration), "prompt": prompt,
            "key_frames": rec.get("key_frames", []), "key_items": rec.get("key_items", {})}


def _release_example(rec: dict, rid: str, index, cfg: ExampleConfig, clip, image) -> dict:
    """`make_example` for `recipe="release"`: frames as captioned image blocks (video), or
    the one image, with the release's system prompt and hint (pipeline/release_input.py)."""
    from visd_jax.pipeline import release_input as ri
    from visd_jax.text import load_tokenizer
    from visd_jax.text import release as rtext

    if clip is None:  # visual QA: one image block as ours; the release prompts no image
        frames, fl = image, None
        times = np.zeros((1,), np.float64)
        boxes, valid, key_mask = _key_boxes(rec, np.zeros((1,)), image.shape[2], image.shape[1], 1.0,
                                            cfg.max_boxes, rid)
        key_mask = np.zeros_like(key_mask)
    else:
        fl = ri.frame_list(clip, rec, rid)
        if int(fl.inserted.sum()) > cfg.max_key_frames:
            raise RecordError(rid, f"{int(fl.inserted.sum())} key-frame images exceed max_key_frames="
                                   f"{cfg.max_key_frames}")
        frames, times = fl.frames, fl.times
        boxes, valid, key_mask = ri.key_boxes(fl, rec, cfg.max_boxes, rid)
    kind = cfg.prompt
    if kind:  # key-frame images only (none without paths); each image is its own temporal pair
        frames, kind = prompt_frames(frames, kind, boxes, valid, key_mask, numbers=np.arange(len(frames)) + 1,
                                     numbers_on=key_mask)
    question = rec["question"] + (rtext.HINTS[kind] if kind else "")
    if clip is None:
        patches, grid = video.patchify(frames, normalize=False)
        patches, grid = np.asarray(patches, np.uint8), np.asarray(grid, np.int32)
    else:
        patches, grid = ri.frames_as_images(frames)
    n_img, gh, gw = (int(v) for v in grid)
    messages = [{"role": "system", "content": cfg.system or rtext.SYSTEM_PROMPTS[rec["task"]]},
                {"role": "user", "content": ri.user_content(fl, question)}]
    ids = _template_ids(messages, load_tokenizer(cfg.tokenizer_dir), "<|image_pad|>",
                        blocks=1 if clip is None else n_img, tokens_per_block=gh * gw // MERGE, rid=rid)
    _check_size(ids, patches, cfg, rid)
    h, w = frames.shape[1:3]
    duration = 0.0 if clip is None else float(clip.duration)
    return {
        "input_ids": ids, "patches": patches, "grid_thw": grid,
        "frame_times": np.asarray(times, np.float32), "key_frame_mask": key_mask,
        "boxes": boxes, "box_valid": valid, "second_per_grid": np.float32(0.0),
        "meta": {**_meta(rec, rid, index, question, w, h, duration, kind, clip is None),
                 "media": "image" if clip is None else "frames"},
    }
