import pytest

import data
from visd_jax.rewards import parse, score_group
from visd_jax.training.traces import trace


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    ds = data.generate(tmp_path_factory.mktemp("synth"), seed=3, num_clips=2)
    return ds.records()


def test_every_task_type_is_covered(records):
    assert {r["task"] for r in records} >= set(data.TASKS)


def test_ground_truth_traces_earn_full_rewards(records):
    for rec in records:
        text = trace(rec)
        c = parse(text)
        scores = score_group([text], rec, progress=1.0)
        assert scores["format"][0] == 1.0, (rec["task"], text)
        task = rec["task"]
        if task in ("General video QA MCQ", "temporal QA (MCQ)"):
            assert scores["ans_acc"][0] == 1.0, text
        if task.startswith("temporal QA"):
            # one decimal of rounding on each end of the span
            assert scores["ans_tiou"][0] > 0.9, text
            assert scores["thk_temporal_segment"][0] == 1.0, text
        if task == "temporal-spatial free-form QA":
            assert scores["thk_temporal_point"][0] > 0.99, text
            assert scores["thk_spatial"][0] > 0.9, text  # boxes rounded to whole pixels
            assert len(c.claims) >= 1
        if task == "visual QA":
            assert scores["ans_viou"][0] > 0.9, text


def test_bad_temporal_answer_is_named():
    rec = {"id": "x1", "task": "temporal QA", "answer": "soon", "image_size": [10, 10]}
    with pytest.raises(ValueError, match="x1"):
        trace(rec)
