"""A run over data with bad records of every kind trains on the good ones and writes each
bad id and reason to bad_records.jsonl (and the count to metrics.jsonl)."""
import json

import data
from tests.training.conftest import tiny_config
from visd_jax.training.metrics import read_metrics
from visd_jax.training.trainer import Trainer


def test_mixed_bad_records_train_and_are_all_reported(tmp_path):
    ds = data.generate(tmp_path / "synth", seed=7, num_clips=1)
    good = ds.records()
    lines = [json.dumps(r).encode() for r in good]
    lines.insert(1, json.dumps({**good[0], "id": "gone", "video": "gone.mp4"}).encode())
    lines.insert(3, b'{"id": "latin1", "question": "caf\xe9"}')  # line 4: not UTF-8
    lines.insert(5, json.dumps({**good[0], "id": "box-out", "key_items": {"0": {"x": [[0.5, 0.5, 1.5, 0.9]]}}}).encode())
    # fits max_prompt_tokens (512), not the largest bucket (448): was a pad_batch error
    lines.insert(6, json.dumps({**good[0], "id": "long", "question": good[0]["question"] + " Why?" * 70}).encode())
    (tmp_path / "ann.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    # one pass and a step: every record read at least once; one SFT view, one compile
    cfg = tiny_config(tmp_path, mode="sft", sft_steps=(len(lines) + 1) // 2 + 1, rl_steps=0,
                      **{"sft.prompted_frac": 0.0, "sft.privileged_frac": 0.0})
    cfg.data.update(source="stgr", annotations=str(tmp_path / "ann.jsonl"), video_root=str(ds.video_root))
    Trainer(cfg).run()
    bad = [json.loads(x) for x in (tmp_path / "run" / "bad_records.jsonl").read_text().splitlines()]
    # a record read again in the next pass is reported again; a synthetic record may be bad
    # too (its key frames crowd more boxes onto one of the 4 sampled frames than max_boxes)
    assert {"#3", "box-out", "gone", "long"} <= {b["id"] for b in bad}
    reasons = {b["id"]: b["reason"] for b in bad}
    assert "ann.jsonl:4: not UTF-8" in reasons["#3"] and "outside the frame" in reasons["box-out"]
    assert "no such file" in reasons["gone"] and "exceed the largest bucket (448" in reasons["long"]
    assert read_metrics(tmp_path / "run")[-1]["data/bad_records"] == len(bad)
