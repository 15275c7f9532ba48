"""A clip cut short whose index is at the front still opens and decodes up to the cut; it
must be a bad record, not a shorter clip taken as the whole."""
import io

import av
import numpy as np
import pytest

from visd_jax import video


def _faststart_mp4(path, seconds: float, fps: int = 10) -> bytes:
    # faststart moves the index in a second pass over the file: a path, not a buffer
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "faststart"}) as out:
        s = out.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        rng = np.random.default_rng(0)
        for k in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), format="rgb24")
            for packet in s.encode(frame):
                out.mux(packet)
        for packet in s.encode(None):
            out.mux(packet)
    return path.read_bytes()


def test_cut_faststart_mp4_is_an_error_and_the_whole_one_loads(tmp_path):
    whole = _faststart_mp4(tmp_path / "clip.mp4", 6.0)
    with av.open(io.BytesIO(whole)) as c:  # the index is at the front: moov before mdat
        assert c.streams.video[0].frames == 60
    assert whole.index(b"moov") < whole.index(b"mdat")
    clip = video.load_video(whole, max_pixels=56 * 56)
    assert clip.duration == pytest.approx(6.0, abs=0.2)
    with pytest.raises(video.VideoError, match="truncated"):
        video.load_video(whole[: len(whole) // 2], max_pixels=56 * 56)
