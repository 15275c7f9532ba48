"""The synthetic set: deterministic per seed, and its labels agree with the decoded pixels."""
import json
import re

import av
import numpy as np
import pytest

import data
from data import scenes


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return data.generate(tmp_path_factory.mktemp("synth"), seed=3, num_clips=4)


def test_same_seed_gives_identical_files_and_other_seed_differs(synth, tmp_path):
    again = data.generate(tmp_path / "a", seed=3, num_clips=4)
    files = sorted(p.relative_to(synth.root) for p in synth.root.rglob("*") if p.is_file())
    assert len(files) == 4 * 2 + 2  # mp4 + png per clip, annotations, config
    for f in files:
        assert (synth.root / f).read_bytes() == (again.root / f).read_bytes(), f
    other = data.generate(tmp_path / "b", seed=4, num_clips=1)
    assert (other.video_root / "clip_0000.mp4").read_bytes() != \
        (synth.video_root / "clip_0000.mp4").read_bytes()


def test_cache_is_reused(synth):
    mtime = synth.annotations.stat().st_mtime_ns
    assert data.generate(synth.root.parent, seed=3, num_clips=4).root == synth.root
    assert synth.annotations.stat().st_mtime_ns == mtime


def test_every_task_type_is_present_with_its_answer_format(synth):
    recs = synth.records()
    assert {r["task"] for r in recs} == set(data.TASKS) | {data.IMAGE_TASK}
    for r in recs:
        if r["task"] == "temporal QA":
            assert re.fullmatch(r"\[\d+(\.\d+)?, \d+(\.\d+)?\]", r["answer"])
        elif r["task"] == "temporal QA (MCQ)":
            assert re.fullmatch(r"[ABCD]\n\[\d+(\.\d+)?, \d+(\.\d+)?\]", r["answer"])
            letter = r["answer"][0]
            assert re.search(rf"^{letter}\. ", r["question"], re.M)
        elif r["task"] == "General video QA MCQ":
            assert r["answer"] in "ABCD" and len(r["answer"]) == 1
        assert r["key_frames"] and r["key_items"]


def _decode(path):
    with av.open(str(path)) as c:
        return [(f.time, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def test_labels_match_decoded_pixels(synth):
    """Key frame times are presentation times, and each box holds its object's colour."""
    recs = [r for r in synth.records() if "video" in r]
    fps = synth.config.fps
    for clip in sorted({r["video"] for r in recs}):
        frames = _decode(synth.video_root / clip)
        for r in (r for r in recs if r["video"] == clip):
            s = {kf["idx"]: kf["time"] for kf in r["key_frames"]}
            assert r["duration"] == pytest.approx(len(frames) / fps, abs=1e-3)
            for idx, t in s.items():
                assert frames[idx][0] == pytest.approx(t, abs=1e-3)
            for idx, objs in r["key_items"].items():
                img = frames[int(idx)][1].astype(float)
                h, w = img.shape[:2]
                for name, boxes in objs.items():
                    colour = np.array(scenes.COLOURS[name.split()[0]], float)
                    for x1, y1, x2, y2 in boxes:
                        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1
                        cx, cy = int((x1 + x2) / 2 * w), int((y1 + y2) / 2 * h)
                        # The centre of every shape is inside it (lossy codec: a tolerance).
                        patch = img[cy - 1:cy + 2, cx - 1:cx + 2].reshape(-1, 3).mean(0)
                        assert np.abs(patch - colour).max() < 40, (r["id"], name)
        # Temporal answers: the object is in the frames inside the window, absent outside.
        for r in (r for r in recs if r["video"] == clip and r["task"] == "temporal QA"):
            start, end = json.loads(r["answer"])
            assert start == pytest.approx(r["key_frames"][0]["time"])
            assert end == pytest.approx(r["key_frames"][-1]["time"])


def test_rendered_boxes_are_tight(synth):
    scene, frames, boxes, _, _ = data.make_clip(synth.config, 0)
    for k in (0, scene.num_frames // 2):
        for obj in scene.objects:
            m = scenes.object_mask(obj, k, scene.height, scene.width)
            if not m.any():
                assert obj.name not in boxes[k]
                continue
            x1, y1, x2, y2 = boxes[k][obj.name]
            ys, xs = np.nonzero(m)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)


def test_bad_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="multiple of 64"):
        data.generate(tmp_path, width=224)
    with pytest.raises(ValueError, match="num_clips"):
        data.generate(tmp_path, num_clips=0)
