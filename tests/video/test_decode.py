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


@pytest.fixture
def skipping_decoder_only(monkeypatch):
    """Fail instead of falling back to the decode-everything path (which would make any
    equality with a full decode hold trivially)."""
    import visd_jax.video.decode as decode

    def no_fallback(*args, **kwargs):
        raise AssertionError("the skipping decoder lost a kept frame and fell back")

    monkeypatch.setattr(decode, "_decode_kept", no_fallback)


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_skipped_nonref_frames_leave_kept_pixels_exact(shared_videos, name, skipping_decoder_only):
    """load_video skips decoding frames nothing refers to unless they are kept: the kept
    frames must be bit-identical to a decode of every frame (B-frames among them)."""
    path = shared_videos / name
    clip = load_video(path)
    np.testing.assert_array_equal(clip.frames, _full_decode_kept(path, clip.indices, clip.frames.shape[1:3]))


def test_skipping_is_exact_on_a_generated_b_frame_clip(skipping_decoder_only):
    data = encode_clip([40 * i for i in range(30)])  # x264 with 2 B-frames
    for max_frames in (4, 8, 16):
        clip = load_video(data, max_frames=max_frames, fps=25.0)
        np.testing.assert_array_equal(clip.frames,
                                      _full_decode_kept(data, clip.indices, clip.frames.shape[1:3]))


# Short keyframe intervals so that decoding really starts at later clean points.
SHORT_GOP = {
    "h264-mp4": ("mp4", "libx264", {"g": "5", "bf": "2"}),
    "h264-mkv": ("matroska", "libx264", {"g": "5", "bf": "2"}),
    "h264-open-gop": ("mp4", "libx264", {"g": "5", "bf": "2", "x264-params": "open-gop=1"}),
    "vp9": ("webm", "libvpx-vp9", {"g": "5"}),
    "vp8": ("webm", "libvpx", {"g": "5"}),
    "mpeg4": ("mp4", "mpeg4", {"g": "5"}),
}


@pytest.mark.parametrize("variant", sorted(SHORT_GOP))
def test_starting_at_clean_points_is_exact(variant, skipping_decoder_only):
    """Packets before a kept frame's last clean point are never decoded: the kept frames must
    still be bit-identical to a decode of every frame, for every codec and GOP kind."""
    fmt, codec, options = SHORT_GOP[variant]
    data = encode_clip([40 * i for i in range(30)], fmt=fmt, codec=codec, options=options)
    for max_frames in (4, 6, 8, 16):
        clip = load_video(data, max_frames=max_frames, fps=25.0)
        np.testing.assert_array_equal(clip.frames,
                                      _full_decode_kept(data, clip.indices, clip.frames.shape[1:3]))


def _keyframes_and_clean(data):
    import io

    import av

    from visd_jax.video.decode import _probe

    with av.open(io.BytesIO(data)) as c:
        key = [i for i, p in enumerate(c.demux(video=0)) if p.size and p.is_keyframe]
    clean = [i for i, ok in enumerate(_probe(data, "test").clean) if ok]
    return key, clean


@pytest.mark.parametrize("variant,expect_clean", [
    ("h264-mp4", "all keyframes"),  # x264 keyframes are IDRs
    ("h264-mkv", "all keyframes"),
    ("vp9", "all keyframes"),
    ("vp8", "all keyframes"),
    ("h264-open-gop", "first only"),  # later keyframes are plain I slices
    ("mpeg4", "none"),  # not a supported codec: decoded from the start
])
def test_clean_points_per_codec(variant, expect_clean):
    fmt, codec, options = SHORT_GOP[variant]
    key, clean = _keyframes_and_clean(encode_clip([40 * i for i in range(30)], fmt=fmt,
                                                  codec=codec, options=options))
    assert len(key) >= 5
    expected = {"all keyframes": key, "first only": [0], "none": []}[expect_clean]
    assert clean == expected


def test_needed_packets_run_from_the_last_clean_point():
    from visd_jax.video.access import needed_packets

    # decode order of pts with B-frames; packets 0 and 4 are clean (IDR)
    order = [0, 3, 1, 2, 4, 7, 5, 6]
    clean = [True, False, False, False, True, False, False, False]
    assert needed_packets(order, clean, {2, 6}) == {0, 3, 1, 2, 4, 7, 5, 6}
    assert needed_packets(order, clean, {1}) == {0, 3, 1}
    assert needed_packets(order, clean, {4}) == {4}
    assert needed_packets(order, clean, {3, 7}) == {0, 3, 4, 7}
    assert needed_packets(order, [False] * 8, {5}) == {0, 3, 1, 2, 4, 7, 5}  # no clean point


def test_h264_nal_walk_in_both_framings():
    from visd_jax.video.access import h264_nal_types

    nal = lambda t, n=3: bytes([0x60 | t]) + b"\xaa" * n  # noqa: E731
    avcc = b"".join(len(x).to_bytes(4, "big") + x for x in (nal(9), nal(6), nal(5, 10)))
    assert h264_nal_types(avcc, 4) == [9, 6, 5]
    assert h264_nal_types(avcc[:-2], 4) == [9, 6]  # a truncated NAL ends the walk
    annexb = b"\x00\x00\x00\x01" + nal(7) + b"\x00\x00\x01" + nal(1)
    assert h264_nal_types(annexb, None) == [7, 1]


@pytest.mark.parametrize("name,total,needed", [("5587257558.mp4", 540, 240),
                                                ("s08e18_seg02_clip_03.mp4", 182, 90)])
def test_shared_clips_decode_from_idr_points(shared_videos, name, total, needed):
    """Both shared clips are H.264 with an IDR every 30 (resp. ~8) frames: only the stretches
    from an IDR to a kept frame are decoded (pixel equality is checked above)."""
    from visd_jax.video.access import needed_packets
    from visd_jax.video.decode import _probe

    probe = _probe(shared_videos / name, "test")
    clip = load_video(shared_videos / name)
    need = needed_packets(probe.decode_order, probe.clean, {probe.pts[i] for i in clip.indices})
    assert len(probe.pts) == total and len(need) == needed


def test_decoder_threads_do_not_change_pixels():
    data = encode_clip([40 * i for i in range(30)], options={"g": "5", "bf": "2"})
    ref = load_video(data, max_frames=8, fps=25.0)
    for threads in (1, 3):
        clip = load_video(data, max_frames=8, fps=25.0, threads=threads)
        np.testing.assert_array_equal(clip.frames, ref.frames)
        np.testing.assert_array_equal(clip.timestamps, ref.timestamps)
    with pytest.raises(ValueError, match="threads"):
        load_video(data, threads=-1)
