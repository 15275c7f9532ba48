"""load_video: frame count, indices, timestamps and pixels against an independent PyAV decode."""
import math

import numpy as np
import pytest
from PIL import Image

from .helpers import audio_only, encode_clip, reference_decode
from visd_jax.video import VideoError, load_video

CLIPS = {
    # name: (total frames, fps) as stated for the shared clips
    "5587257558.mp4": (540, 30000 / 1001),
    "s08e18_seg02_clip_03.mp4": (182, 3.0),
}


def expected_count(total, src_fps, fps=2.0, lo=4, hi=16):
    """qwen-vl-utils' rule, restated: clamp total/src_fps*fps to [lo, hi] and total, floor to even."""
    n = total / src_fps * fps
    n = min(max(n, 2 * math.ceil(lo / 2)), 2 * math.floor(min(hi, total) / 2), total)
    return 2 * math.floor(n / 2)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CLIPS))
def test_real_clip_count_timestamps_pixels(shared_videos, name):
    path = shared_videos / name
    total, fps = CLIPS[name]
    ref_frames, ref_times = reference_decode(path)
    assert len(ref_frames) == total
    clip = load_video(path)
    n = expected_count(total, fps)
    assert n == 16
    idx = np.round(np.linspace(0, total - 1, n)).astype(int)
    np.testing.assert_array_equal(clip.indices, idx)
    assert clip.frames.shape == (16, 224, 420, 3) and clip.frames.dtype == np.uint8
    np.testing.assert_allclose(clip.timestamps, ref_times[idx], rtol=0, atol=1e-9)
    assert clip.source_fps == pytest.approx(fps, rel=1e-9)
    assert clip.duration == pytest.approx(total / fps, abs=1e-6)
    # swscale bicubic vs Pillow's antialiased bicubic: same picture up to resampler details.
    for k, i in enumerate(idx):
        ref = np.asarray(Image.fromarray(ref_frames[i]).resize((420, 224), Image.BICUBIC))
        diff = np.abs(clip.frames[k].astype(np.int16) - ref.astype(np.int16))
        assert diff.mean() < 3.0, (k, diff.mean())


@pytest.mark.parametrize(
    "fmt,codec", [("mp4", "libx264"), ("matroska", "libx264"), ("webm", "libvpx-vp9")]
)
def test_irregular_pts_are_reported_not_assumed(fmt, codec):
    pts_ms = [0, 40, 90, 100, 170, 200, 260, 330, 400, 410, 500, 520, 600, 700, 730, 800, 950, 1000]
    data = encode_clip(pts_ms, fmt=fmt, codec=codec, audio=True)
    clip = load_video(data, fps=8.0, max_frames=8)
    ref_frames, ref_times = reference_decode(data)
    np.testing.assert_allclose(ref_times, np.array(pts_ms) / 1000.0, atol=1e-9)
    total = len(pts_ms)
    n = expected_count(total, clip.source_fps, fps=8.0, hi=8)
    idx = np.round(np.linspace(0, total - 1, n)).astype(int)
    np.testing.assert_array_equal(clip.indices, idx)
    np.testing.assert_allclose(clip.timestamps, np.array(pts_ms)[idx] / 1000.0, atol=1e-9)
    # Each kept frame is the right one: frame i is grey 8*i away from the red corner.
    h, w = clip.frames.shape[1:3]
    grey = clip.frames[:, h // 2 :, w // 2 :].astype(float).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(grey, np.minimum(8 * idx, 248), atol=3.0)


def test_path_and_bytes_agree(tmp_path):
    data = encode_clip([i * 40 for i in range(12)])
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    a, b = load_video(path), load_video(data)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert (a.duration, a.source_fps) == (b.duration, b.source_fps)


def test_resize_respects_pixel_budget():
    data = encode_clip([i * 40 for i in range(8)], size=(120, 200))
    clip = load_video(data, max_pixels=32 * 28 * 28, min_pixels=4 * 28 * 28)
    _, h, w, _ = clip.frames.shape
    assert h % 28 == 0 and w % 28 == 0 and 4 * 784 <= h * w <= 32 * 784
    assert (h, w) == (112, 196)


def test_missing_file_names_source(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(VideoError, match="nope.mp4.*no such file"):
        load_video(missing)


def test_empty_inputs(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="empty.mp4.*empty"):
        load_video(empty)
    with pytest.raises(VideoError, match="<0 bytes>: empty"):
        load_video(b"")


def test_corrupt_bytes():
    rng = np.random.default_rng(0)
    with pytest.raises(VideoError, match="bytes>"):
        load_video(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    data = bytearray(encode_clip([i * 40 for i in range(12)]))
    data[:64] = bytes(64)  # wipe the ftyp header
    with pytest.raises(VideoError):
        load_video(bytes(data))


@pytest.mark.parametrize("frac", [0.3, 0.6, 0.9])
def test_truncated_mp4(frac):
    data = encode_clip([i * 40 for i in range(30)])  # moov atom at the end, as ffmpeg writes
    with pytest.raises(VideoError, match="bytes>"):
        load_video(data[: int(len(data) * frac)])


def test_truncated_mkv_keeps_only_what_decodes():
    data = encode_clip([i * 40 for i in range(30)], fmt="matroska")
    with pytest.raises(VideoError, match="zero frames"):
        load_video(data[: int(len(data) * 0.3)])
    cut = data[: int(len(data) * 0.9)]
    clip = load_video(cut)
    _, ref_times = reference_decode(cut)
    assert clip.indices[-1] == len(ref_times) - 1
    np.testing.assert_allclose(clip.timestamps, ref_times[clip.indices], atol=1e-9)


def test_audio_only():
    with pytest.raises(VideoError, match="no video stream"):
        load_video(audio_only())


def test_single_frame_video():
    with pytest.raises(VideoError, match="at least 2"):
        load_video(encode_clip([0]))


def test_video_error_is_value_error():
    assert issubclass(VideoError, ValueError)


def _full_decode_kept(source, keep, size_hw):
    """Every frame decoded (no skipping), the kept ones reformatted as load_video does."""
    import io

    import av

    h, w = size_hw
    out = {}
    src = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    with av.open(src) as c:
        for i, f in enumerate(c.decode(c.streams.video[0])):
            if i in set(int(k) for k in keep):
                out[i] = f.reformat(width=w, height=h, format="rgb24", interpolation="BICUBIC").to_ndarray()
    return np.stack([out[int(k)] for k in keep])


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_skipped_nonref_frames_leave_kept_pixels_exact(shared_videos, name):
    """load_video skips decoding frames nothing refers to unless they are kept: the kept
    frames must be bit-identical to a decode of every frame (B-frames among them)."""
    path = shared_videos / name
    clip = load_video(path)
    np.testing.assert_array_equal(clip.frames, _full_decode_kept(path, clip.indices, clip.frames.shape[1:3]))


def test_skipping_is_exact_on_a_generated_b_frame_clip():
    data = encode_clip([40 * i for i in range(30)])  # x264 with 2 B-frames
    for max_frames in (4, 8, 16):
        clip = load_video(data, max_frames=max_frames, fps=25.0)
        np.testing.assert_array_equal(clip.frames,
                                      _full_decode_kept(data, clip.indices, clip.frames.shape[1:3]))
