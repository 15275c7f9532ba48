"""Malformed records raise ValueError naming the field; bad arguments are rejected."""
import pytest

from tests.rewards.records import ST_FREEFORM, TEMPORAL, TEMPORAL_MCQ, VISUAL, record
from visd_jax.rewards import RewardConfig, gold_from_example, parse, score_group


@pytest.mark.parametrize("ex,match", [
    (record(TEMPORAL, task="video QA"), r"example\['task'\]"),
    (record(TEMPORAL, answer="4 to 8"), r"example\['answer'\]"),
    (record(TEMPORAL, answer="[8.0, 4.0]"), "end 4.0 < start 8.0"),
    (record(TEMPORAL, answer="[4.0, 1e999]"), "finite"),
    (record(TEMPORAL_MCQ, answer="B"), "temporal MCQ"),
    (record(VISUAL, answer="the pedestrian"), "visual QA needs"),
    (record(VISUAL, image_size=[0, 500]), r"example\['image_size'\]"),
    (record(ST_FREEFORM, image_size=None), r"example\['image_size'\]"),
    (record(ST_FREEFORM, key_frames=[{"idx": 1}]), r"key_frames'\]\[0\]"),
    (record(ST_FREEFORM, key_items={"12": {"man": [[0.1, 0.2, 0.3]]}}), r"key_items'\]\['12'\]"),
    (record(TEMPORAL, answer=None), r"example\['answer'\]"),
])
def test_bad_records_raise_naming_the_field(ex, match):
    with pytest.raises(ValueError, match=match):
        gold_from_example(ex)


def test_none_entries_are_dropped_like_the_reference_trainer():
    g = gold_from_example(record(ST_FREEFORM, key_items={"12": None, "30": {"ball": None}}))
    assert g.key_items == {"30": {}}


def test_bad_arguments():
    with pytest.raises(ValueError, match="progress"):
        score_group(["x"], TEMPORAL, progress=float("nan"))
    with pytest.raises(ValueError, match="completions"):
        score_group("x", TEMPORAL, progress=0.1)
    with pytest.raises(ValueError, match=r"completions\[1\]"):
        score_group(["x", None], TEMPORAL, progress=0.1)
    with pytest.raises(ValueError, match=r"weights\['format'\]"):
        score_group(["x"], TEMPORAL, progress=0.1, weights={"format": float("inf")})
    with pytest.raises(ValueError, match="spatial_iou_mode"):
        RewardConfig(spatial_iou_mode="mean")
    with pytest.raises(TypeError, match="parse"):
        parse(b"<think>")


def test_parse_fields():
    c = parse("<think> a <obj>man</obj><box>[1,2,3,4]</box><box>[5,6,7,8]</box>at<t> 4.5 </t>s"
              "</think><answer>  From <t>1</t>s to <t>2.5</t>s\nCorrect Option: (B) </answer>")
    assert c.answer == "From <t>1</t>s to <t>2.5</t>s\nCorrect Option: (B)"
    assert c.claims[0].name == "man" and c.claims[0].time == 4.5
    assert c.claims[0].boxes == ((1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0))
    assert c.answer_span == (1.0, 2.5) and c.chosen_option == "(B)"
    assert c.think_times == ()  # " 4.5 " has spaces: not a `<t>[\d.]+</t>s` time
    assert c.tags.balanced and c.has_answer
