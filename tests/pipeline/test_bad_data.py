"""Skipping never loops: data with no usable record, or too many bad ones, stops with a report."""
import json
import time

import pytest

import data
from visd_jax import pipeline as P

SMALL = P.Buckets(tokens=(512, 1024), patches=(1024, 2048))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return data.generate(tmp_path_factory.mktemp("synth_bad"), seed=2, num_clips=2)


def _source(synth, tmp_path, n_good: int, n_missing: int):
    good = synth.records()[:n_good]
    bad = [{**synth.records()[0], "id": f"gone-{i}", "video": f"gone-{i}.mp4"} for i in range(n_missing)]
    (tmp_path / "ann.jsonl").write_text("\n".join(json.dumps(r) for r in good + bad) + "\n")
    return P.StgrSource(tmp_path / "ann.jsonl", synth.video_root)


def _cfg(**kw):
    return P.PipelineConfig(**{**dict(batch_size=2, shard_index=0, shard_count=1, buckets=SMALL, num_epochs=None,
                                      example=P.ExampleConfig(max_tokens=1024, max_patches=2048)), **kw})


def test_all_bad_source_stops_after_one_pass_with_the_reasons(synth, tmp_path):
    src = _source(synth, tmp_path, 0, 6)
    t = time.process_time()
    with pytest.raises(P.NoUsableRecords) as e:
        next(P.make_iterator(src, _cfg()))  # repeats forever: it must stop on its own
    assert time.process_time() - t < 30
    msg = str(e.value)
    assert "no usable record in a whole pass over the 6 records" in msg
    assert "6 x undecodable video" in msg and "gone-" in msg


def test_bad_share_above_the_bound_stops_and_at_the_bound_trains(synth, tmp_path):
    n = len(synth.records())
    over = _source(synth, tmp_path, n // 2, n)  # ~2/3 bad
    with pytest.raises(P.NoUsableRecords, match="more than max_bad_fraction=0.5"):
        it = P.make_iterator(over, _cfg(min_records=6, shuffle=False))
        for _ in range(n):
            next(it)
    (tmp_path / "b").mkdir()
    half = _source(synth, tmp_path / "b", n // 2, n // 2)  # 1/2 bad, interleaved by the shuffle
    it = P.make_iterator(half, _cfg(min_records=6, max_bad_fraction=0.75))
    for _ in range(n):
        next(it)
    assert it.report()["bad"] > 0 and it.report()["good"] >= n


def test_a_non_utf8_line_is_one_bad_record_named_by_file_and_line(synth, tmp_path):
    good = [json.dumps(r).encode() for r in synth.records()[:2]]
    (tmp_path / "a.jsonl").write_bytes(good[0] + b"\n" + b'{"id": "x\xff"}\n' + good[1] + b"\n")
    src = P.StgrSource(tmp_path / "a.jsonl", synth.video_root)
    assert len(src) == 3 and src[0]["error"] is None and src[2]["error"] is None
    assert src[1]["error"] == f"{tmp_path / 'a.jsonl'}:2: not UTF-8 (byte 0xff at column 10)"
