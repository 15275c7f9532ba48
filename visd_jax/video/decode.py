"""Decode a video into the frames Qwen2.5-VL sees: PyAV, forward only, RGB only where kept.

Data flow: demux once (no decoding) to count the frames and read their presentation times;
choose the source indices with qwen-vl-utils' rule (`smart_nframes`, then
round(linspace(0, total-1, n))); decode forward, and for the kept frames only, scale and
convert to RGB in one swscale call (`VideoFrame.reformat`). No seeking: x264's default
keyframe interval is 250 frames, so a seek would decode most of a GOP anyway.

Interpolation: swscale BICUBIC. qwen-vl-utils resizes with torchvision bicubic,
antialias=True; swscale widens its bicubic kernel by the scale factor when shrinking, so it
is also an antialiased bicubic. The two agree to a few grey levels, not bit for bit (tested
against Pillow's antialiased bicubic). Doing the resize inside the YUV->RGB conversion is
what keeps the non-kept frames free of any per-pixel work.
"""
from __future__ import annotations

import io
import os
from fractions import Fraction
from typing import NamedTuple

import av
import numpy as np

from visd_jax.video.access import CleanPoints, needed_packets
from visd_jax.video.resize import sample_indices, smart_nframes, smart_resize


class VideoError(ValueError):
    """A video that cannot be decoded; the message names the source and the reason."""


class Clip(NamedTuple):
    """Sampled, resized frames of one video.

    frames: [T, H, W, 3] uint8 RGB; H, W multiples of 28 (`smart_resize`).
    timestamps: [T] float64 seconds, presentation time of each kept frame relative to the
      first frame of the stream (pts - first_pts) * time_base.
    duration: seconds, the video stream's duration (else the end of its last packet).
    source_fps: the stream's average frame rate.
    indices: [T] int64 source frame indices (presentation order) of the kept frames.
    total_frames: frames in the stream, the count the indices were sampled from.
    """

    frames: np.ndarray
    timestamps: np.ndarray
    duration: float
    source_fps: float
    indices: np.ndarray | None = None
    total_frames: int | None = None


def _describe(source) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return repr(os.fspath(source))


def _open(source, name: str):
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise VideoError(f"video {name}: empty input")
        stream_or_path = io.BytesIO(bytes(source))
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise VideoError(f"video {name}: no such file")
        if os.path.getsize(path) == 0:
            raise VideoError(f"video {name}: empty file")
        stream_or_path = path
    try:
        return av.open(stream_or_path, mode="r")
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise VideoError(f"video {name}: cannot open container ({e})") from e


def _video_stream(container, name: str):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoError(f"video {name}: no video stream (streams: {', '.join(kinds)})")
    return container.streams.video[0]


class _Probe(NamedTuple):
    pts: list  # sorted presentation times (time_base units), one per frame
    time_base: Fraction
    fps: float
    duration: float
    decode_order: list  # the same pts in decode (packet) order
    clean: list  # per packet in decode order: may decoding start here (video.access)


def _probe(source, name: str) -> _Probe:
    """Frame count, presentation times, fps, duration, clean points: a demux-only pass."""
    with _open(source, name) as container:
        stream = _video_stream(container, name)
        pts, end, clean = [], None, []
        is_clean = CleanPoints(stream.codec_context.name, stream.codec_context.extradata)
        try:
            for packet in container.demux(stream):
                if packet.size and packet.pts is None:
                    clean = None  # cannot place it in presentation order: no skipping
                if packet.size and packet.pts is not None:
                    pts.append(packet.pts)
                    if clean is not None:
                        clean.append(is_clean(packet))
                    if packet.duration:
                        stop = packet.pts + packet.duration
                        end = stop if end is None else max(end, stop)
        except av.FFmpegError as e:
            raise VideoError(f"video {name}: corrupt or truncated stream ({e})") from e
        if not pts:
            raise VideoError(f"video {name}: the video stream has zero frames")
        tb = stream.time_base or Fraction(1, 1)
        rate = stream.average_rate or stream.guessed_rate
        decode_order = list(pts)
        pts.sort()
        # The video stream's own extent; the container's duration may include audio.
        if stream.duration:
            duration = float(stream.duration * tb)
        elif end is not None:
            duration = float((end - pts[0]) * tb)
        else:
            duration = None
        if rate:
            fps = float(rate)
        elif len(pts) > 1:
            fps = (len(pts) - 1) / float((pts[-1] - pts[0]) * tb)
        else:
            fps = 1.0
        if not duration:
            duration = float((pts[-1] - pts[0]) * tb) + 1.0 / fps
        if clean is None:
            clean = [False] * len(pts)
        # the packets' own end where they carry durations (a long last frame counts whole)
        span = float(((end if end is not None else pts[-1]) - pts[0]) * tb) + (0.0 if end is not None else 1.0 / fps)
        _check_whole(name, len(pts), span, stream.frames, float(stream.duration * tb) if stream.duration else None)
        return _Probe(pts, tb, fps, duration, decode_order, clean)


def _check_whole(name: str, packets: int, span: float, declared_frames: int, declared: float | None) -> None:
    """A file cut short whose index sits at the front (mp4 "faststart") still opens and
    demuxes, up to the cut: its packets then cover much less than the index declares."""
    if declared_frames and packets < 0.95 * declared_frames - 1:
        raise VideoError(f"video {name}: truncated: {packets} of the {declared_frames} frames its index declares")
    if declared and span < 0.9 * declared - 0.5:
        raise VideoError(f"video {name}: truncated: its frames cover {span:.2f}s of the {declared:.2f}s "
                         f"its index declares")


def _set_threads(stream, threads: int) -> None:
    """threads 0: FFmpeg's automatic count (cores + 1, at most 16); n >= 1: exactly n."""
    stream.thread_type = "AUTO" if threads != 1 else "NONE"
    if threads > 1:
        stream.codec_context.thread_count = threads


def _rgb(frame, size) -> np.ndarray:
    """One decoded frame scaled (swscale bicubic) to size(h, w) and converted to RGB."""
    h, w = size(frame.height, frame.width)
    return frame.reformat(width=w, height=h, format="rgb24", interpolation="BICUBIC").to_ndarray()


def _decode_by_pts(source, name, keep: np.ndarray, probe: _Probe, size, threads: int):
    """Decode only what the kept frames need. Packets before a kept frame's last clean
    random-access point (`video.access`) and after the last kept frame of each stretch are
    not sent to the decoder at all; of the rest, the packet of a kept frame is decoded in
    full and every other one with `skip_frame = NONREF`, so the decoder drops frames
    nothing refers to (B-frames: 63% of the 29.97 fps clip's frames) without decoding
    them. Every reference a kept frame has is decoded from a clean start, so its pixels
    are those of a full decode. Frames are matched by presentation time. Returns
    (frames, pts) or None when some kept frame did not come out (a damaged stream): the
    caller then decodes every frame.
    """
    want = {int(probe.pts[int(i)]): k for k, i in enumerate(keep)}
    feed = needed_packets(probe.decode_order, probe.clean, want)
    frames, pts = [None] * len(keep), [None] * len(keep)
    left = len(want)
    with _open(source, name) as container:
        stream = _video_stream(container, name)
        _set_threads(stream, threads)
        ctx = stream.codec_context
        try:
            for packet in container.demux(stream):
                if packet.size and packet.pts is not None and packet.pts not in feed:
                    # nothing kept needs it. A packet without a pts cannot be placed, so it
                    # is always decoded (the probe then marks no clean points); the final
                    # flush packet (size 0) still goes in.
                    continue
                # set per packet: FFmpeg copies the setting into the frame it submits
                ctx.skip_frame = "DEFAULT" if packet.pts in want else "NONREF"
                for frame in packet.decode():
                    k = want.get(frame.pts)
                    if k is None or frames[k] is not None:
                        continue
                    frames[k] = _rgb(frame, size)
                    pts[k] = frame.pts
                    left -= 1
                if not left:
                    break
        except av.FFmpegError:
            return None
    return (frames, pts) if not left else None


def _decode_kept(source, name, keep: np.ndarray, size, threads: int):
    """Decode forward; reformat (scale + RGB) only frames whose index is in `keep`.

    Returns (frames list, pts list, number of frames decoded). `size` is (h, w), or None to
    pick it from the first decoded frame with `smart_resize` (done by the caller's closure).
    """
    wanted = {int(i): k for k, i in enumerate(keep)}
    last = int(keep.max())
    frames, pts = [None] * len(keep), [None] * len(keep)
    n = 0
    with _open(source, name) as container:
        stream = _video_stream(container, name)
        _set_threads(stream, threads)
        try:
            for frame in container.decode(stream):
                k = wanted.get(n)
                if k is not None:
                    frames[k] = _rgb(frame, size)
                    pts[k] = frame.pts if frame.pts is not None else frame.dts
                    if pts[k] is None:
                        raise VideoError(f"video {name}: frame {n} has no presentation time")
                n += 1
                if n > last:
                    break
        except av.FFmpegError as e:
            raise VideoError(f"video {name}: corrupt or truncated stream ({e})") from e
    return frames, pts, n


def load_video(
    source,
    *,
    fps: float = 2.0,
    min_frames: int = 4,
    max_frames: int = 16,
    max_pixels: int = 128 * 28 * 28,
    min_pixels: int = 4 * 28 * 28,
    threads: int = 0,
) -> Clip:
    """Decode `source` (path or bytes; mp4/webm/mkv) into Qwen2.5-VL frames.

    T = smart_nframes(total, source_fps; fps, min_frames, max_frames): total/source_fps*fps
    clamped to [min_frames, max_frames] and total, floored to even (qwen-vl-utils).
    Kept indices = round(linspace(0, total-1, T)). Each kept frame is resized to
    smart_resize(H, W; factor 28, min_pixels, max_pixels). `max_pixels` is used as given
    (qwen-vl-utils additionally caps it by a total-pixel budget over all frames).

    threads: decoder threads; 0 lets FFmpeg choose (one per core, for a lone decoder), 1
    decodes on the calling thread (many decoders in parallel, e.g. pipeline workers).

    Raises VideoError (a ValueError) naming the source for a missing or empty file,
    corrupt or truncated bytes, no video stream, or zero frames.
    """
    name = _describe(source)
    if threads < 0:
        raise ValueError(f"load_video: threads must be >= 0, got {threads}")
    probe = _probe(source, name)
    all_pts, tb, source_fps, duration = probe.pts, probe.time_base, probe.fps, probe.duration
    total, first_pts = len(all_pts), all_pts[0]
    if total < 2:
        raise VideoError(f"video {name}: {total} frame(s); at least 2 are needed for one temporal patch")
    try:
        nframes = smart_nframes(
            total, source_fps, fps=fps, min_frames=min_frames, max_frames=max_frames
        )
    except ValueError as e:
        raise VideoError(f"video {name}: {e}") from e

    def size(h, w):
        return smart_resize(h, w, min_pixels=min_pixels, max_pixels=max_pixels)

    keep = sample_indices(total, nframes)
    fast = _decode_by_pts(source, name, keep, probe, size, threads) if len(set(all_pts)) == total else None
    if fast is not None:
        frames, pts = fast
        decoded = total
    else:
        frames, pts, decoded = _decode_kept(source, name, keep, size, threads)
    if decoded < total:
        # Fewer decodable frames than packets (damaged tail): resample over what decodes,
        # as qwen-vl-utils' decoders would see only those frames.
        if decoded < 2:
            raise VideoError(f"video {name}: only {decoded} of {total} frames decode")
        total = decoded
        nframes = smart_nframes(
            total, source_fps, fps=fps, min_frames=min_frames, max_frames=max_frames
        )
        keep = sample_indices(total, nframes)
        frames, pts, decoded = _decode_kept(source, name, keep, size, threads)
        if any(f is None for f in frames):
            raise VideoError(f"video {name}: decoding is not repeatable (truncated stream?)")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise VideoError(f"video {name}: frame size changes mid-stream {sorted(shapes)}")
    timestamps = np.array([float((p - first_pts) * tb) for p in pts], dtype=np.float64)
    return Clip(
        frames=np.stack(frames),
        timestamps=timestamps,
        duration=float(duration),
        source_fps=float(source_fps),
        indices=keep,
        total_frames=int(total),
    )
