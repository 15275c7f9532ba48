"""A run whose data has no usable record stops at its first batch with the reasons."""
import json
import time

import pytest

from tests.training.conftest import tiny_config
from visd_jax.pipeline import NoUsableRecords
from visd_jax.training.trainer import Trainer


def test_all_videos_missing_stops_the_run_with_the_report(tmp_path):
    recs = [{"id": f"r{i}", "task": "General video QA MCQ", "question": "Which?", "answer": "A",
             "video_path": f"v{i}.mp4", "source": "STR_plm"} for i in range(5)]
    (tmp_path / "ann.json").write_text(json.dumps(recs))
    cfg = tiny_config(tmp_path, mode="gspo")
    cfg.data.update(source="stgr", annotations=str(tmp_path / "ann.json"), media_roots="STR=videos")
    run = Trainer(cfg)
    t = time.process_time()
    with pytest.raises(NoUsableRecords, match=r"whole pass over the 5 records.*5 x undecodable video.*r\d"):
        run.run()
    assert time.process_time() - t < 20
