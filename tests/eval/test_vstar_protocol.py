"""The V-STaR protocol on canned text: prompts, the release's answer parsing, the judges, and
one item's row scored by the metrics against values worked out by hand."""
from __future__ import annotations

import json

import pytest

from visd_jax.eval import vstar
from visd_jax.eval import vstar_protocol as vp
from visd_jax.eval.vstar_chain import score_item

ITEM = {"vid": "v1", "domain": "d", "fps": 10.0, "frame_count": 100, "width": 200, "height": 100,
        "question": "What is the man holding?", "answer": "A red umbrella.",
        "temporal_question": "When does the man hold the umbrella?", "timestamps": [2.4, 5.0],
        "spatial_question": "Where is the umbrella?", "spatial_question_2": "Where is the red umbrella?",
        "bboxes": [{"timestamp": 3, "frame_index": 30, "xmin": 0, "ymin": 0, "xmax": 100, "ymax": 50},
                   {"timestamp": 4, "frame_index": 40, "xmin": 100, "ymin": 50, "xmax": 200, "ymax": 100}]}


def test_prompts_carry_the_protocol_facts():
    assert "This video is 10.0 seconds long." in vp.prompt(ITEM, "temporal")
    t2 = vp.prompt(ITEM, "temporal_2")
    assert "resolution of 200x100" in t2 and "There are 2 bounding boxes" in t2 and "[[0, 0, 100, 50]" in t2
    assert "within the time range [3, 4, 5]" in vp.prompt(ITEM, "spatial")  # ceil(2.4)..floor(5.0)
    assert "You only need to output 2 bbox(es)" in vp.prompt(ITEM, "spatial_2")
    assert vp.prompt(ITEM, "vqa").startswith("Answer the question about the video: What is the man holding?")
    assert all("<think>" in vp.prompt(ITEM, q) and "video_pad" not in vp.prompt(ITEM, q) for q in vp.QUESTIONS)
    with pytest.raises(ValueError, match="question must be one of"):
        vp.prompt(ITEM, "when")


@pytest.mark.parametrize("bad, field", [({"fps": 0}, "fps"), ({"timestamps": [5, 2]}, "timestamps"),
                                        ({"bboxes": []}, "bboxes"), ({"answer": None}, "answer"),
                                        ({"bboxes": [{"timestamp": 1}]}, "a box needs")])
def test_bad_items_are_named(bad, field):
    with pytest.raises(vp.VStarError, match=field) as e:
        vp.check_item({**ITEM, **bad}, 7)
    assert "item 7" in str(e.value) and "'v1'" in str(e.value)


@pytest.mark.parametrize("text, span", [
    ("<think>at 1:00 it starts</think><answer>From <t>2.5</t>s to <t>4</t>s</answer>", [2.5, 4.0]),
    ("From 0:03 to 0:05.", [3.0, 5.0]),  # mm:ss read as seconds
    ("From 1:30 to 11:30", None),  # the release replaces "1:30" inside "11:30" too: three numbers
    ("<answer>From 1 to 2 or 3</answer>", None),  # not exactly two numbers
    ("no numbers", None)])
def test_parse_span(text, span):
    assert vp.parse_span(text) == span


def test_parse_boxes_forms_and_scaling():
    size = dict(input_size=(100, 50), video_size=(200, 100))  # the model saw a half-size frame
    want = {"3": [[0.0, 0.0, 100.0, 50.0]], "4": [[100.0, 50.0, 200.0, 100.0]]}
    forms = ['<answer>{"3": [0, 0, 50, 25], "4": [50, 25, 100, 50]}</answer>',
             "```json\n[{'3': [0, 0, 50, 25]}, {'4': [[50, 25, 100, 50]]}]\n```",
             '[["3", [0, 0, 50, 25]], [4, [50, 25, 100, 50]], [5, [1, 2]]]']  # [1, 2] is no box: dropped
    for text in forms:
        assert vp.parse_boxes(text, **size) == want, text
    assert vp.parse_boxes('{"3": [0, 0, 50, 25]}', **size, rescale=False) == {"3": [[0.0, 0.0, 50.0, 25.0]]}
    # several boxes for a second: all kept (the scorer takes the best); keys as written
    two = vp.parse_boxes('{"3.0": [[0, 0, 5, 5], [0, 0, 50, 25], [1, 2]]}', **size)
    assert two == {"3.0": [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 100.0, 50.0]]}
    assert vp.parse_boxes("I cannot see it", **size) is None
    assert vp.parse_boxes("{not json}", **size) is None
    # cut off inside the JSON, or a list the release's repair returns as a list: nothing scored
    assert not vp.parse_boxes('{"3": [0, 0, 50, 25], "4": [50, 25', **size)
    assert vp.parse_boxes('[3, [0, 0, 10, 10]], [4, [0, 0, 10, 10]]]', **size) is None
    # replies that would crash a parser: nothing, not an exception
    assert vp.parse_boxes("{" + '"3": [' * 5000 + "}", **size) is None
    assert vp.parse_boxes('{"3": [1e999, 0, 5, 5]}', **size) == {}
    assert vp.parse_span("1" * 5000 + ":00 to 5") is None


def test_judges():
    assert vp.match_score("A red umbrella.", "The man holds a red umbrella") == 3
    assert vp.match_score("A red umbrella.", "an umbrella") == 1  # half the content words: not correct
    assert vp.match_score("The ball is red.", "The ball is orange.") == 1  # the colour is the answer
    assert vp.match_score("A red umbrella.", "nothing") == 0
    assert vp.match_score("B", "B. two") == 3 and vp.match_score("B", "A") == 0
    # V-STaR: the reply read as an int, >= 2 correct; no int is -1 (counted 0)
    assert [vp.judge_reply_score(r) for r in ("2", " 3\n", "two", "5", None)] == [2, 3, -1, 5, -1]
    assert vp.judge_prompt("q", "g", "c") == "Question: q\nGroundtruth answer: g\nCandidate answer: c\nYour response: "


def test_an_item_row_scores_to_hand_computed_metrics(tmp_path):
    texts = {"vqa": "<think>.</think><answer>a red umbrella</answer>",
             "temporal": "<answer>From <t>2.4</t>s to <t>3.7</t>s</answer>",  # tIoU 1.3 / 2.6 = 0.5
             "temporal_2": "<answer>From <t>0</t>s to <t>1</t>s</answer>",  # no overlap: 0
             # chain 1: frame 3 exact (1), frame 4 half-width box (0.5): vIoU 0.75
             "spatial": '<answer>{"3": [0, 0, 50, 25], "4": [75, 25, 100, 50]}</answer>',
             "spatial_2": '<answer>{"7": [0, 0, 50, 25]}</answer>'}  # wrong second: 0
    row = score_item(ITEM, "0:v1", texts, (100, 50), vp.match_score(ITEM["answer"], "a red umbrella"), "match")
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(row) + "\n")
    m = vstar.evaluate(vstar.read_jsonl(str(path)))  # what `python -m visd_jax.eval.vstar` prints
    assert (m["Acc"], m["tIoU1"], m["tIoU2"], m["vIoU1"], m["vIoU2"]) == pytest.approx((1, 0.5, 0, 0.75, 0))
    assert m["R1@tIoU0.5"] == 1 and m["R1@tIoU0.7"] == 0 and m["AP1@vIoU0.7"] == 0.5
    assert m["AM1"] == pytest.approx(100 * 2.25 / 3) and m["mAM"] == pytest.approx(100 * (2.25 + 1) / 6)


def test_empty_answers_and_unanswered_items_count_as_v_star_counts_them():
    row = {"judge_score": 3, "gt_span": [0, 2], "pred_span_1": [0, 2], "pred_span_2": [0, 1],
           "gt_boxes": [["1", [0, 0, 2, 2]], ["1", [0, 0, 4, 4]]], "pred_boxes_1": {"1": [[0, 0, 2, 2]]},
           "pred_boxes_2": None, "answer_vqa": "yes"}
    empty = {**row, "answer_vqa": "", "pred_span_1": None}  # V-STaR skips it: wrong, in no mean
    m = vstar.evaluate([row, empty], unanswered=2)  # and two items that could not be asked
    assert m["Acc"] == pytest.approx(1 / 4) and m["tIoU1"] == 1.0 and m["tIoU2"] == pytest.approx(0.5)
    assert m["vIoU1"] == pytest.approx((1 + 0.25) / 2)  # one gold second twice: each box its own frame
    with pytest.raises(ValueError, match="judge_score must be a number"):
        vstar.evaluate([{**row, "judge_score": None}])
