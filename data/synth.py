"""Seeded synthetic grounded video QA: H.264 clips (PyAV) plus STGR JSONL annotations.

    ds = data.generate("/tmp/visd_synth", seed=0, num_clips=24)
    ds.annotations   # .../annotations.jsonl, one STGR record per line
    ds.video_root    # .../videos, holding clip_0000.mp4, ...; records name files there

Clip i depends only on (seed, i), so a larger `num_clips` extends a smaller set. The output
directory is a cache keyed by the full configuration: a second call with the same
arguments returns at once; a different configuration is written to a fresh directory.
"""
from __future__ import annotations

import dataclasses
import fractions
import hashlib
import io
import json
import os
import pathlib
import shutil
import tempfile

import av
import numpy as np
from PIL import Image

from data import questions, scenes

FORMAT_VERSION = 2  # 2: visual QA answers are <obj><box> (the release grammar)


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    seed: int = 0
    num_clips: int = 24
    width: int = 256  # a multiple of 64: see __post_init__
    height: int = 192
    fps: int = 6
    min_seconds: float = 4.0
    max_seconds: float = 6.0
    images: bool = True  # also write one visual QA (image) record per clip
    crf: int = 20
    difficulty: int = 0  # 1, 2: harder scenes (scenes.sample_scene) and questions


    def __post_init__(self):
        if self.num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {self.num_clips}")
        if self.difficulty not in scenes.DIFFICULTY:
            raise ValueError(f"difficulty must be one of {sorted(scenes.DIFFICULTY)}, got {self.difficulty!r}")
        # Widths that are not a multiple of 64 leave padding in the encoder's input rows
        # and x264's output then varies between runs (measured: 224 and 240 do, 192, 256
        # and 320 do not); the set must be byte-identical for a seed.
        if self.width % 64 or self.height % 16 or self.width < 64 or self.height < 64:
            raise ValueError(f"width must be a multiple of 64 and height of 16 (>= 64) for "
                             f"byte-identical H.264, got {self.width}x{self.height}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(f"need 0 < min_seconds <= max_seconds, got "
                             f"{self.min_seconds}, {self.max_seconds}")
        if self.fps < 2:
            raise ValueError(f"fps must be >= 2, got {self.fps}")

    def key(self) -> str:
        fields = dataclasses.asdict(self)
        if not fields["difficulty"]:  # the sets made before the knob keep their folders
            del fields["difficulty"]
        blob = json.dumps({**fields, "v": FORMAT_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class SynthDataset:
    root: pathlib.Path
    config: SynthConfig

    @property
    def annotations(self) -> pathlib.Path:
        return self.root / "annotations.jsonl"

    @property
    def video_root(self) -> pathlib.Path:
        return self.root / "videos"

    def records(self) -> list[dict]:
        with open(self.annotations) as f:
            return [json.loads(line) for line in f if line.strip()]


def encode_mp4(frames_TxHxWx3: np.ndarray, fps: int, *, crf: int = 20) -> bytes:
    """H.264 (yuv420p) mp4 bytes; frame k is presented at k / fps seconds.

    One encoder thread and no wall-clock metadata keep the bytes a function of the input.
    """
    frames = np.asarray(frames_TxHxWx3)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fractions.Fraction(fps, 1))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # x264's frame threads make the bitstream depend on scheduling; one thread does not.
        stream.codec_context.thread_count = 1
        stream.codec_context.thread_type = "NONE"
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        for k, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts = k
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def make_clip(config: SynthConfig, i: int):
    """Scene, frames, per-frame boxes and records of clip i (a pure function of seed and i)."""
    rng = np.random.default_rng([config.seed, i])
    scene = scenes.sample_scene(rng, width=config.width, height=config.height, fps=config.fps,
                                min_seconds=config.min_seconds, max_seconds=config.max_seconds,
                                difficulty=config.difficulty)
    frames, boxes = scenes.render(scene)
    clip_id = f"synth{config.seed}-{i:04d}"
    recs = questions.video_records(scene, boxes, rng, clip_id=clip_id,
                                   video=f"clip_{i:04d}.mp4", difficulty=config.difficulty)
    image = None
    if config.images:
        # The frame where most objects are visible makes the best single image.
        k = max(range(scene.num_frames), key=lambda j: (len(boxes[j]), -j))
        recs.append(questions.image_record(scene, boxes, rng, clip_id=clip_id,
                                           image=f"clip_{i:04d}.png", frame=k))
        image = frames[k]
    return scene, frames, boxes, recs, image


def _write(config: SynthConfig, tmp: pathlib.Path) -> None:
    videos = tmp / "videos"
    videos.mkdir(parents=True)
    lines = []
    for i in range(config.num_clips):
        scene, frames, _, recs, image = make_clip(config, i)
        (videos / f"clip_{i:04d}.mp4").write_bytes(encode_mp4(frames, config.fps,
                                                              crf=config.crf))
        if image is not None:
            Image.fromarray(image).save(videos / f"clip_{i:04d}.png", optimize=False)
        lines += [json.dumps(r, sort_keys=True) for r in recs]
    (tmp / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    (tmp / "config.json").write_text(json.dumps(
        {**dataclasses.asdict(config), "format_version": FORMAT_VERSION}, indent=1))


def generate(cache_dir: str | os.PathLike, *, seed: int = 0, num_clips: int = 24,
             **kwargs) -> SynthDataset:
    """Builds (or reuses) the dataset under `cache_dir/synth-<config hash>/`.

    Written to a temporary sibling and renamed into place, so concurrent callers
    (test workers, grain workers, several hosts on a shared disk) never see half a set.
    """
    config = SynthConfig(seed=seed, num_clips=num_clips, **kwargs)
    cache = pathlib.Path(cache_dir)
    root = cache / f"synth-{config.key()}"
    if (root / "config.json").exists():
        return SynthDataset(root, config)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".synth-tmp-", dir=cache))
    try:
        _write(config, tmp)
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / "config.json").exists():  # lost a race only if the winner finished
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return SynthDataset(root, config)
