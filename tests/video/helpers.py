"""Small clips encoded with PyAV for the video tests (seconds of work, no files kept)."""
from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np


def encode_clip(
    pts_ms,
    *,
    fmt="mp4",
    codec="libx264",
    size=(64, 96),
    audio=False,
    options=None,
) -> bytes:
    """Encode len(pts_ms) frames; frame i is flat grey 8*i (capped at 248) plus a bar.

    pts_ms: presentation time of each frame in milliseconds (time_base 1/1000), which may
    be irregular; the decoder must report these times back.
    options: encoder options; default for libx264: keyframe interval 250, 2 B-frames.
    """
    h, w = size
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        vs = out.add_stream(codec, rate=25)
        vs.width, vs.height = w, h
        vs.pix_fmt = "yuv420p"
        vs.codec_context.time_base = Fraction(1, 1000)
        vs.time_base = Fraction(1, 1000)
        if options is not None:
            vs.options = dict(options)
        elif codec == "libx264":
            vs.options = {"g": "250", "bf": "2"}
        if audio:
            aus = out.add_stream("libopus", rate=48000) if fmt == "webm" else out.add_stream("aac", rate=16000)
        for i, t in enumerate(pts_ms):
            img = np.full((h, w, 3), min(8 * i, 248), np.uint8)
            img[: h // 4, : w // 4] = (255, 0, 0)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = int(t)
            frame.time_base = Fraction(1, 1000)  # vs.time_base changes once the muxer starts
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        if audio:
            _encode_audio(out, aus, seconds=0.5)
    return buf.getvalue()


def _encode_audio(out, stream, *, seconds):
    rate = stream.rate
    n = int(rate * seconds)
    t = np.arange(n) / rate
    samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    frame_size = stream.codec_context.frame_size or 1024
    for s in range(0, n, frame_size):
        chunk = samples[:, s : s + frame_size]
        if chunk.shape[1] < frame_size:
            chunk = np.pad(chunk, ((0, 0), (0, frame_size - chunk.shape[1])))
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
        frame.rate = rate
        frame.pts = s
        for p in stream.encode(frame):
            out.mux(p)
    for p in stream.encode():
        out.mux(p)


def audio_only(fmt="mp4") -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        _encode_audio(out, out.add_stream("aac", rate=16000), seconds=0.5)
    return buf.getvalue()


def reference_decode(source):
    """Independent decode: every frame to RGB, with pts*time_base seconds (presentation order)."""
    container = av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    with container:
        stream = container.streams.video[0]
        frames = [(f.pts, f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
        tb = stream.time_base
    frames.sort(key=lambda x: x[0])
    t0 = frames[0][0]
    times = np.array([float((p - t0) * tb) for p, _ in frames])
    return np.stack([f for _, f in frames]), times
