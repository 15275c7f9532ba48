"""The releases' STGR records (video_path/image_path under per-source roots, key-frame image
paths, None-filled fields) give exactly the examples our own field names give."""
import json
import pathlib
import shutil

import numpy as np
import pytest

import data
from data import stgr
from visd_jax import pipeline as P
from visd_jax.pipeline import release

SMALL = P.Buckets(tokens=(512, 1024), patches=(1024, 2048))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return data.generate(tmp_path_factory.mktemp("synth_rel"), seed=3, num_clips=2, images=True)


def _as_release(rec: dict) -> dict:
    """One of our records written the way the release's JSON holds it."""
    out = {k: v for k, v in rec.items() if k not in ("video", "image", "key_items")}
    if rec["task"] == "visual QA":
        w, h = rec["image_size"]
        # release Case B: {name: boxes} for the image, boxes in image pixels
        items = {name: [[b[0] * w, b[1] * h, b[2] * w, b[3] * h] for b in boxes]
                 for name, boxes in rec["key_items"]["0"].items()}
        out.update(source="gqa", image_path=rec["image"], video_path=None, key_items={**items, "gone": None})
    else:
        items = {f: {**objs, "absent object": None} for f, objs in rec["key_items"].items()}
        out.update(source="STR_plm_rdcap", video_path=rec["video"], image_path=None,
                   key_items={**items, "999999": None},
                   key_frames=[{**kf, "path": f"kf/{rec['id']}_{kf['idx']}.jpg"} for kf in rec["key_frames"]])
    out["reasoning_process"] = None  # a column another row has: from_json filled it with None
    return out


@pytest.fixture(scope="module")
def released(synth, tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    (root / "plm").mkdir()
    (root / "gqa").mkdir()
    (root / "kfs" / "kf").mkdir(parents=True)
    for f in synth.video_root.iterdir():
        shutil.copy(f, root / ("gqa" if f.suffix == ".png" else "plm") / f.name)
    recs = [_as_release(r) for r in synth.records()]
    for r in recs:
        for kf in r.get("key_frames", []):
            if "path" in kf:
                (root / "kfs" / kf["path"]).write_bytes(b"jpeg")
    (root / "STGR-RL.json").write_text(json.dumps(recs))
    roots = {"STR": "nowhere", "STR_plm": str(root / "plm"), "gqa": "gqa"}  # relative: under video_root
    return root, roots


def test_release_records_give_the_same_examples(synth, released):
    root, roots = released
    ours = P.StgrSource(synth.annotations, synth.video_root)
    theirs = P.StgrSource(root / "STGR-RL.json", root, media_roots=roots, keyframe_roots="kfs")  # relative
    assert len(ours) == len(theirs)
    cfg = P.ExampleConfig(max_tokens=1024, max_patches=2048, max_frames=4, max_pixels=56 * 56)
    for i in range(len(ours)):
        a, b = P.make_example(ours[i], cfg), P.make_example(theirs[i], cfg)
        for k in ("input_ids", "patches", "grid_thw", "boxes", "box_valid", "key_frame_mask"):
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} of record {i}")
        ka, kb = a["meta"]["key_items"], b["meta"]["key_items"]
        assert ka.keys() == kb.keys() and all(ka[f].keys() == kb[f].keys() for f in ka)
        for f in ka:
            for name in ka[f]:  # image boxes went through pixels and back
                np.testing.assert_allclose(kb[f][name], ka[f][name], rtol=0, atol=1e-6)
    rec = theirs[0]["record"]
    assert "reasoning_process" not in rec and "999999" not in rec["key_items"]
    assert all(kf["path"].startswith(str(root / "kfs")) and pathlib.Path(kf["path"]).is_file()
               for kf in rec["key_frames"])


def test_roots_pick_exact_then_longest_substring_then_default():
    roots = release.parse_roots("STR=a,STR_plm=b,gqa=c")
    assert [release.root_for(s, roots) for s in ("STR_plm_rdcap", "STR_tg", "gqa", "timerft")] == ["b", "a", "c", None]
    assert release.root_for("anything", release.parse_roots("/videos")) == "/videos"
    with pytest.raises(ValueError, match="not source=directory"):
        release.parse_roots("STR=a,oops")


def test_check_reports_usable_records_and_reasons_per_task(synth, released, tmp_path, capsys):
    root, roots = released
    recs = json.loads((root / "STGR-RL.json").read_text())
    recs[0] = {**recs[0], "video_path": "missing.mp4"}
    recs[1] = {**recs[1], "answer": "[3.0, 1.0]"}  # temporal QA: end before start
    (tmp_path / "a.json").write_text(json.dumps(recs))
    rep = stgr.check(tmp_path / "a.json", video_root=root, media_roots=roots, keyframe_roots=str(root / "kfs"))
    assert sum(r.records for r in rep.values()) == len(recs)
    assert sum(r.usable for r in rep.values()) == len(recs) - 2
    first, second = rep[recs[0]["task"]], rep[recs[1]["task"]]
    assert first.reasons["missing file"] == 1
    assert any("0 <= start <= end" in why for _, why in second.examples)
    assert stgr.main(["check", str(tmp_path / "a.json"), "--video_root", str(root), "--media_roots",
                      ",".join(f"{k}={v}" for k, v in roots.items()), "--keyframe_roots", str(root / "kfs")]) == 0
    out = capsys.readouterr().out
    assert "missing file" in out and out.splitlines()[-1].split()[1:] == [str(len(recs)), str(len(recs) - 2)]
