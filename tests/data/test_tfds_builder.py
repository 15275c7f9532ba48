"""The TFDS builder round-trips: array_record read back with tfds.data_source, no TF."""
import json


import data
from data import tfds_builder


def test_tfds_round_trip(tmp_path):
    name = tfds_builder.build(tmp_path, seed=5, num_clips=5)
    ref = data.generate(tmp_path / "ref", seed=5, num_clips=5)
    by_id = {r["id"]: r for r in ref.records()}
    seen = {}
    for split in ("train", "validation"):
        src = tfds_builder.source(tmp_path, split, seed=5, num_clips=5)
        for i in range(len(src)):
            ex = src[i]
            rec = json.loads(ex["annotation"])
            assert rec == by_id[rec["id"]]
            media = ref.video_root / rec.get("video", rec.get("image", ""))
            got = ex["video"] if "video" in rec else ex["image"]
            assert got == media.read_bytes()
            assert (int(rec["id"].split("-")[1]) % 5 == 4) == (split == "validation")
            seen[rec["id"]] = split
    assert set(seen) == set(by_id)
    assert name == "synth_video_qa/s5_n5"
