"""The grain pipeline: every good record comes out, every bad one is reported, resume is exact."""
import json

import av
import numpy as np
import pytest

import data
from visd_jax import pipeline as P
from visd_jax import text

SMALL = P.Buckets(tokens=(512, 1024), patches=(1024, 2048))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return data.generate(tmp_path_factory.mktemp("synth"), seed=1, num_clips=3)


def _cfg(**kw):
    base = dict(batch_size=3, shard_index=0, shard_count=1, buckets=SMALL,
                example=P.ExampleConfig(max_tokens=1024, max_patches=2048))
    return P.PipelineConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def mixed(synth, tmp_path_factory):
    """Good synthetic records plus one bad record per failure mode, in one JSONL file."""
    root = tmp_path_factory.mktemp("mixed")
    good = synth.records()
    v = good[0]
    for f in synth.video_root.iterdir():
        (root / f.name).symlink_to(f)
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x17" * 500)
    bad = {
        "box-out": {**v, "key_items": {"9": {"x": [[0.5, 0.5, 1.2, 0.9]]}}},
        "neg-time": {**v, "key_frames": [{"idx": 3, "time": -0.5}]},
        "kf-past-end": {**v, "key_frames": [{"idx": 10_000, "time": 1.0}]},
        "time-past-end": {**v, "key_frames": [{"idx": 3, "time": 99.0}]},
        "span-past-end": {**v, "task": "temporal QA", "answer": "[1.0, 80.0]"},
        "missing-file": {**v, "video": "nope.mp4"},
        "corrupt": {**v, "video": "corrupt.mp4"},
        "bad-task": {**v, "task": "captioning"},
        "empty-box": {**v, "key_items": {"9": {"x": [[0.5, 0.5, 0.5, 0.9]]}}},
    }
    lines = []
    for i, r in enumerate(good):
        lines.append(json.dumps(r))
        if i % 2 == 0 and bad:
            rid, rec = bad.popitem()
            lines.append(json.dumps({**rec, "id": rid}))
    assert not bad, "every bad record must be in the file"
    lines.append("{not json")
    (root / "ann.jsonl").write_text("\n".join(lines) + "\n")
    bad_ids = {"box-out", "neg-time", "kf-past-end", "time-past-end", "span-past-end",
               "missing-file", "corrupt", "bad-task", "empty-box", "#" + str(len(lines) - 1)}
    return P.StgrSource(root / "ann.jsonl", root), {r["id"] for r in good}, bad_ids


def _ids(batches):
    return [m["id"] for b in batches for m in b["meta"]]


def test_skip_yields_every_good_record_and_reports_every_bad_one(mixed):
    src, good, bad = mixed
    it = P.make_iterator(src, _cfg(policy="skip", shuffle=True))
    batches = list(it)
    ids = _ids(batches)
    assert sorted(ids) == sorted(good)
    rep = it.report()
    assert rep["good"] == len(good) and rep["bad"] == len(bad)
    assert {rid for rid, _ in rep["bad_records"]} == bad
    reasons = dict(rep["bad_records"])
    assert "outside the frame" in reasons["box-out"]
    assert "past the end" in reasons["kf-past-end"]
    assert "undecodable" in reasons["corrupt"]
    for b in batches:
        assert b["input_ids"].shape[1] in SMALL.tokens
        assert b["patches"].shape[1] in SMALL.patches


def test_raise_policy_raises_on_the_first_bad_record(mixed):
    src, _, _ = mixed
    with pytest.raises(P.RecordError):
        list(P.make_iterator(src, P.PipelineConfig.for_eval(
            batch_size=2, shard_index=0, shard_count=1, buckets=SMALL,
            example=P.ExampleConfig(max_tokens=1024, max_patches=2048))))


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert [m["id"] for m in x["meta"]] == [m["id"] for m in y["meta"]]
        for k in x:
            if k != "meta":
                np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def _resume(src, workers, k=2, n=2):
    cfg = _cfg(workers=workers, seed=7, num_epochs=None, batch_size=2)
    it = P.make_iterator(src, cfg)
    for _ in range(k):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # must survive a JSON checkpoint
    want = [next(it) for _ in range(n)]
    it.close()
    fresh = P.make_iterator(src, cfg)
    fresh.set_state(state)
    got = [next(fresh) for _ in range(n)]
    fresh.close()
    _assert_same(want, got)


def test_resume_gives_the_same_next_batches(mixed):
    _resume(mixed[0], workers=0)


@pytest.mark.slow
def test_resume_with_two_workers(mixed):
    _resume(mixed[0], workers=2)


def test_same_seed_same_order_and_shards_partition(synth):
    src = P.StgrSource(synth.annotations, synth.video_root)
    a = _ids(P.make_iterator(src, _cfg(seed=3)))
    assert a == _ids(P.make_iterator(src, _cfg(seed=3)))
    assert a != _ids(P.make_iterator(src, _cfg(seed=4)))
    s0 = _ids(P.make_iterator(src, _cfg(shard_index=0, shard_count=2)))
    s1 = _ids(P.make_iterator(src, _cfg(shard_index=1, shard_count=2)))
    assert not set(s0) & set(s1) and sorted(s0 + s1) == sorted(a)


def test_example_layout_tokens_times_and_boxes(synth):
    rec = next(r for r in synth.records() if r["task"] == "temporal QA")
    item = {"index": 0, "record": rec, "media": str(synth.video_root / rec["video"])}
    ex = P.make_example(item, P.ExampleConfig())
    gt, gh, gw = ex["grid_thw"]
    ids = ex["input_ids"]
    assert (ids == text.VIDEO_PAD_ID).sum() == gt * gh * gw // 4 == len(ex["patches"]) // 4
    assert (ids == text.VISION_START_ID).sum() == gt
    # Raw uint8 pixels in Qwen's patch order; normalised they are patchify's float patches.
    from visd_jax import video

    clip = video.load_video(str(synth.video_root / rec["video"]))
    assert ex["patches"].dtype == np.uint8
    np.testing.assert_array_equal(video.normalize_patches(ex["patches"]), video.patchify(clip.frames)[0])
    # Independent decode: PyAV presentation times of every frame.
    with av.open(str(synth.video_root / rec["video"])) as c:
        all_times = np.array([f.time for f in c.decode(video=0)])
    gap = np.abs(ex["frame_times"][:, None] - all_times[None, :]).min(axis=1)
    assert (gap < 1e-6).all()  # float32 timestamps of real frames
    tok = text.load_tokenizer()
    prompt = tok.decode(ids)
    for g in range(gt):
        assert f"Frame {g + 1} at {ex['frame_times'][2 * g]:.1f}s: <|vision_start|>" in prompt
    assert prompt.startswith("<|im_start|>system\n" + text.system_prompt("temporal QA"))
    assert prompt.endswith(rec["question"] + "<|im_end|>\n<|im_start|>assistant\n")
    # Key boxes land on the sampled frame nearest each key time, scaled to the model frame.
    h, w = gh * 14, gw * 14
    for kf in rec["key_frames"]:
        j = int(np.argmin(np.abs(ex["frame_times"] - kf["time"])))
        assert ex["key_frame_mask"][j]
        want = np.array(rec["key_items"][str(kf["idx"])][next(iter(rec["key_items"][str(
            kf["idx"])]))][0]) * [w, h, w, h]
        assert any(np.allclose(ex["boxes"][j, k], want, atol=1e-3)
                   for k in range(ex["boxes"].shape[1]) if ex["box_valid"][j, k])


def test_visual_prompt_changes_key_frames_and_appends_hint(synth):
    from visd_jax import prompts

    rec = next(r for r in synth.records() if r["task"] == "temporal QA")
    item = {"index": 0, "record": rec, "media": str(synth.video_root / rec["video"])}
    raw = P.make_example(item, P.ExampleConfig())
    dark = P.make_example(item, P.ExampleConfig(prompt="darken"))
    assert dark["meta"]["question"] == rec["question"] + prompts.hint("darken")
    assert not np.array_equal(raw["patches"], dark["patches"])
    # Darkening only scales pixels down: patch values never increase.
    assert (dark["patches"] <= raw["patches"]).all()
    assert len(dark["input_ids"]) > len(raw["input_ids"])


def test_tfds_source_feeds_the_same_records(tmp_path):
    from data import tfds_builder

    tfds_builder.build(tmp_path, seed=2, num_clips=5)
    src = P.TfdsSource("synth_video_qa/s2_n5", split="train", data_dir=tmp_path)
    it = P.make_iterator(src, _cfg(shuffle=False))
    ids = _ids(it)
    assert sorted(ids) == sorted(f"synth2-{c:04d}-{s}" for c in range(4)
                                 for s in ["0", "1", "2", "3", "4", "img"])
    assert it.report()["bad"] == 0


def test_decode_threads_share_the_cores():
    """None shares the host's cores among concurrent decodes; a set value is kept."""
    cfg = lambda **kw: P.PipelineConfig(shard_index=0, shard_count=1, **kw)  # noqa: E731
    assert P.decode_threads(cfg(workers=0, read_threads=2), cpus=2) == 1
    assert P.decode_threads(cfg(workers=0, read_threads=1), cpus=8) == 8
    assert P.decode_threads(cfg(workers=4, read_threads=2), cpus=96) == 12
    assert P.decode_threads(cfg(workers=16, read_threads=16), cpus=96) == 1  # never 0
    fixed = P.ExampleConfig(decode_threads=0)  # FFmpeg's own count, as asked
    assert P.decode_threads(cfg(workers=4, example=fixed), cpus=96) == 0
    with pytest.raises(ValueError, match="decode_threads"):
        P.ExampleConfig(decode_threads=-1)
