"""Hand-written cases for each reward on every task type, values worked out by hand with
an independent float64 IoU (below) and, for ROUGE, the rouge-score package itself."""
import math

import numpy as np
import pytest
from rouge_score import rouge_scorer

from tests.rewards.records import (GENERAL_FREEFORM, MCQ, ST_FREEFORM, TEMPORAL, TEMPORAL_MCQ,
                                   VISUAL, record)
from visd_jax.rewards import (RewardConfig, ans_acc, ans_tiou, ans_viou, format_reward, parse,
                              score_group, thk_spatial, thk_temporal_point,
                              thk_temporal_segment)


def iou(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda x: (x[2] - x[0]) * (x[3] - x[1])  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


MAN = [64, 36, 320, 324]          # [0.1, 0.1, 0.5, 0.9] x 640 x 360
BALL4 = [320, 180, 384, 252]      # frame at 4.0 s
BALL10 = ([128, 72, 192, 144], [448, 72, 512, 144])  # frame at 10.0 s, two gold boxes


def st(think, answer="The man picks up a basketball."):
    return f"<think>{think}</think><answer>{answer}</answer>"


def claim(name, boxes, t):
    return f"<obj>{name}</obj>" + "".join(f"<box>{list(b)}</box>" for b in boxes) + f"at<t>{t}</t>s"


# ---- thk_spatial (temporal-spatial free-form QA) ------------------------------------------
def test_spatial_exact_claim_substring_name():
    assert thk_spatial(st(claim("man", [MAN], 4.3)), ST_FREEFORM) == pytest.approx(1.0)


def test_spatial_name_matches_only_by_shared_word():
    box = [64, 36, 320, 200]
    c = st(claim("red shirt guy", [box], 4.0))  # no substring either way; shares red/shirt
    assert thk_spatial(c, ST_FREEFORM) == pytest.approx(iou(MAN, box))
    strict = RewardConfig(identity_match_mode="strict")
    assert thk_spatial(c, ST_FREEFORM, config=strict) == 0.0


def test_spatial_claim_more_than_1s_from_every_key_frame_is_skipped():
    far = claim("man", [MAN], 6.0)  # 2.0 s from 4.0, 4.0 s from 10.0
    near = claim("ball", [[320, 180, 384, 216]], 4.0)
    expected = iou(BALL4, [320, 180, 384, 216])
    assert thk_spatial(st(far + " " + near), ST_FREEFORM) == pytest.approx(expected)
    assert thk_spatial(st(far), ST_FREEFORM) == 0.0
    all_claims = RewardConfig(spatial_norm_mode="all")
    assert thk_spatial(st(far + near), ST_FREEFORM, config=all_claims) == pytest.approx(
        expected / 2)
    # exactly 1.0 s away is inside the (inclusive) gate
    assert thk_spatial(st(claim("man", [MAN], 5.0)), ST_FREEFORM) == pytest.approx(1.0)


def test_spatial_several_boxes_in_one_claim():
    boxes = [BALL10[0], [448, 72, 480, 144]]
    c = st(claim("basketball", boxes, 10.2))
    per_gt = [max(iou(g, b) for b in boxes) for g in BALL10]
    assert per_gt == pytest.approx([1.0, 0.5])
    assert thk_spatial(c, ST_FREEFORM) == pytest.approx(np.mean(per_gt))


def test_spatial_avg_versus_max_over_matched_objects():
    c = st(claim("man basketball", [MAN], 4.0))  # matches both objects of frame 12
    assert thk_spatial(c, ST_FREEFORM) == pytest.approx((1.0 + iou(BALL4, MAN)) / 2)
    assert thk_spatial(c, ST_FREEFORM, config=RewardConfig(spatial_iou_mode="max")) == 1.0


def test_spatial_unmatched_names_and_open_o3_options():
    c = st(claim("person", [MAN], 4.0))
    assert thk_spatial(c, ST_FREEFORM) == 0.0
    # Open-o3: names ignored, max over objects, one-sided gate lets a late claim through.
    o3 = RewardConfig.open_o3()
    assert thk_spatial(c, ST_FREEFORM, config=o3) == pytest.approx(1.0)
    late = st(claim("ball", [BALL10[0]], 12.0))  # 10 - 12 < 1 passes the one-sided gate
    assert thk_spatial(late, ST_FREEFORM) == 0.0
    assert thk_spatial(late, ST_FREEFORM, config=o3) == pytest.approx(0.5)


def test_spatial_needs_think_and_answer_and_claims_with_valid_parts():
    assert thk_spatial(f"<think>{claim('man', [MAN], 4)}</think>", ST_FREEFORM) == 0.0
    bad_time = st(claim("man", [MAN], "soon"))
    bad_json = st("<obj>man</obj><box>[64, 36, oops]</box>at<t>4</t>s")
    short_box = st(claim("man", [[64, 36, 320]], 4))  # kept, scores 0
    assert thk_spatial(bad_time, ST_FREEFORM) == 0.0
    assert thk_spatial(bad_json, ST_FREEFORM) == 0.0
    assert thk_spatial(short_box, ST_FREEFORM) == 0.0
    assert len(parse(short_box).claims) == 1 and not parse(bad_json).claims


def test_spatial_visual_qa_max_iou_of_think_boxes():
    gt = [50, 25, 150, 125]  # [100, 50, 300, 250] scaled by 500/1000, 250/500
    boxes = [[50, 25, 150, 100], [0, 0, 10, 10]]
    c = ("<think>" + "".join(f"<obj>pedestrian</obj><box>{b}</box>" for b in boxes) +
         "</think><answer><obj>pedestrian</obj><box>[50, 25, 150, 125]</box></answer>")
    assert thk_spatial(c, VISUAL) == pytest.approx(max(iou(gt, b) for b in boxes))
    assert ans_viou(c, VISUAL) == pytest.approx(1.0)
    unscaled = c.replace("<answer><obj>pedestrian</obj><box>[50, 25, 150, 125]",
                         "<answer><obj>pedestrian</obj><box>[100, 50, 300, 250]")
    assert ans_viou(unscaled, VISUAL) == pytest.approx(iou(gt, [100, 50, 300, 250]))
    no_refine = record(VISUAL)
    del no_refine["image_size_refine"]
    assert ans_viou(unscaled, no_refine) == pytest.approx(1.0)


@pytest.mark.parametrize("ex", [TEMPORAL, TEMPORAL_MCQ, MCQ, GENERAL_FREEFORM])
def test_spatial_is_zero_on_tasks_without_boxes(ex):
    assert thk_spatial(st(claim("man", [MAN], 4.0)), ex) == 0.0


# ---- temporal thinking rewards -----------------------------------------------------------
@pytest.mark.parametrize("progress,sigma", [(0.0, 4.0), (0.5, 2.0), (0.74, 1.04), (0.75, 1.0),
                                            (1.0, 1.0)])
def test_temporal_point_gaussian_and_sigma_schedule(progress, sigma):
    c = st("at <t>4.5</t>s and <t>12</t>s and <t>10</t>s")
    d = np.array([0.5, 2.0, 0.0])
    expected = np.mean(np.exp(-d ** 2 / (2 * sigma ** 2)))
    assert thk_temporal_point(c, ST_FREEFORM, progress) == pytest.approx(expected, rel=1e-12)


def test_temporal_point_all_or_nothing_on_a_bad_time_and_task_gating():
    assert thk_temporal_point(st("<t>4</t>s <t>1.2.3</t>s"), ST_FREEFORM, 0.5) == 0.0
    assert thk_temporal_point(st("no times"), ST_FREEFORM, 0.5) == 0.0
    for ex in (TEMPORAL, TEMPORAL_MCQ, MCQ, GENERAL_FREEFORM, VISUAL):
        assert thk_temporal_point(st("<t>4</t>s"), ex, 0.5) == 0.0
    with pytest.raises(ValueError, match="progress"):
        thk_temporal_point(st("<t>4</t>s"), ST_FREEFORM, 1.5)


def test_temporal_segment_fraction_inside_gold_span_inclusive():
    c = st("<t>3.9</t>s <t>4.0</t>s <t>8.0</t>s <t>9</t>s")
    assert thk_temporal_segment(c, TEMPORAL) == 0.5
    assert thk_temporal_segment(c, TEMPORAL_MCQ) == 0.0  # gold [10, 20]
    assert thk_temporal_segment(st("<t>12</t>s <t>15</t>s"), TEMPORAL_MCQ) == 1.0
    for ex in (ST_FREEFORM, MCQ, GENERAL_FREEFORM, VISUAL):
        assert thk_temporal_segment(c, ex) == 0.0


# ---- answer rewards ----------------------------------------------------------------------
def test_tiou_overlap_end_before_start_and_unparsable():
    assert ans_tiou(st("", "From <t>5</t>s to <t>10</t>s"), TEMPORAL) == pytest.approx(3 / 6)
    assert ans_tiou(st("", "From <t>10</t>s to <t>5</t>s"), TEMPORAL) == 0.0  # end < start
    assert ans_tiou(st("", "From 5s to 10s"), TEMPORAL) == 0.0
    assert ans_tiou(st("", "From <t>4.</t>s to <t>8.0</t>s"), TEMPORAL) == 1.0
    assert ans_tiou(st("", "From <t>9</t>s to <t>12</t>s"), TEMPORAL) == 0.0
    assert ans_tiou(st("", "From <t>5</t>s to <t>10</t>s"), VISUAL) == 0.0


def test_temporal_mcq_correct_option_and_span():
    ok = st("<t>12</t>s", "From <t>12.5</t>s to <t>20</t>s.\nCorrect Option: B")
    assert ans_acc(ok, TEMPORAL_MCQ) == 1.0
    assert ans_tiou(ok, TEMPORAL_MCQ) == pytest.approx(7.5 / 10)
    for choice, want in [("(B)", 1.0), ("B.", 1.0), ("[B]", 1.0), (" B ", 1.0), ("b", 0.0),
                         ("B) the door", 0.0), ("A", 0.0)]:
        c = st("", f"From <t>12</t>s to <t>20</t>s.\nCorrect Option:{choice}")
        assert ans_acc(c, TEMPORAL_MCQ) == want, choice
    assert ans_acc(st("", "From <t>12</t>s to <t>20</t>s. B"), TEMPORAL_MCQ) == 0.0
    # Only the text up to a second marker counts.
    assert ans_acc(st("", "Correct Option: A Correct Option: B"), TEMPORAL_MCQ) == 0.0


def test_mcq_letter_forms():
    for ans, want in [("C", 1.0), ("(C)", 1.0), ("C.", 1.0), ("[C]", 1.0), ("C. green", 0.0),
                      ("c", 0.0), ("", 0.0)]:
        assert ans_acc(st("", ans), MCQ) == want, ans
    assert ans_acc("<think>x</think>C", MCQ) == 0.0


@pytest.mark.parametrize("ex", [ST_FREEFORM, GENERAL_FREEFORM])
def test_free_form_rouge_equals_rouge_score_package(ex):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for hyp in ["It is raining heavily on the street.", "Raining streets, heavy rains!",
                "The man picked up the basketballs", "", "12 34 !!"]:
        s = scorer.score(ex["answer"], hyp)
        want = (s["rouge1"].fmeasure + s["rouge2"].fmeasure + s["rougeL"].fmeasure) / 3
        assert ans_acc(st("", hyp), ex) == pytest.approx(want, rel=1e-12), hyp
    assert ans_acc(st("", ex["answer"]), ex) == pytest.approx(1.0)


def test_answer_rewards_zero_on_other_tasks():
    c = st("", "From <t>4</t>s to <t>8</t>s")
    assert ans_acc(c, TEMPORAL) == 0.0 and ans_acc(c, VISUAL) == 0.0
    assert ans_viou(c, TEMPORAL) == 0.0


# ---- format ------------------------------------------------------------------------------
@pytest.mark.parametrize("ex,text,want", [
    (ST_FREEFORM, st(claim("man", [MAN], 4)), 1.0),
    (ST_FREEFORM, st("plain reasoning"), 0.5),
    (ST_FREEFORM, st("<obj>man</obj><obj>x" + claim("a", [MAN], 1)), 0.0),  # unbalanced obj
    (ST_FREEFORM, "<think>x</think>", 0.0),
    (ST_FREEFORM, "<think>x</think></think><answer>a</answer>", 0.0),  # 1 open, 2 close
    (ST_FREEFORM, "<think>x</think><think></think><answer>a</answer>", 0.5),  # 2 and 2
    (TEMPORAL, st("<t>1</t>s then <t>2</t>s", "From <t>1</t>s to <t>2</t>s"), 1.0),
    (TEMPORAL, st(claim("man", [MAN], 4)), 0.5),  # one <t> only
    (GENERAL_FREEFORM, st("plain"), 1.0),
    (MCQ, st("plain", "C"), 1.0),
    (VISUAL, st("plain", "<obj>pedestrian</obj><box>[1, 2, 3, 4]</box>"), 1.0),
    (VISUAL, st("plain", "<obj>red car</obj><box>[1, 2, 3, 4]</box>"), 0.5),
])
def test_format(ex, text, want):
    assert format_reward(text, ex) == want


def test_score_group_total_and_weights():
    texts = [st(claim("man", [MAN], 4.3) + " <t>10</t>s", ST_FREEFORM["answer"]), "garbage"]
    out = score_group(texts, ST_FREEFORM, progress=0.2)
    assert set(out) == {"ans_acc", "ans_tiou", "ans_viou", "thk_temporal_point",
                        "thk_temporal_segment", "thk_spatial", "format", "total"}
    assert out["ans_acc"][0] == pytest.approx(1.0) and out["thk_spatial"][0] == 1.0
    sigma = 4 * 0.8
    point = (math.exp(-0.09 / (2 * sigma ** 2)) + 1.0) / 2
    assert out["thk_temporal_point"][0] == pytest.approx(point)
    assert out["total"][0] == pytest.approx(1.0 + point + 1.0 + 1.0)
    assert np.all(out["total"][1] == 0.0)
    w = score_group(texts, ST_FREEFORM, progress=0.2, weights={"thk_spatial": 0.0,
                                                               "ans_acc": 2.0})
    assert w["total"][0] == pytest.approx(2.0 + point + 1.0)
    with pytest.raises(ValueError, match="unknown reward"):
        score_group(texts, ST_FREEFORM, progress=0.2, weights={"acc": 1.0})
