"""AnnotationJudge rules, ModelJudge strict parsing and fallback, privileged_block."""
import json

import pytest

from tests.rewards.records import MCQ, ST_FREEFORM, TEMPORAL, TEMPORAL_MCQ, VISUAL
from visd_jax.judge import (ERROR_CAUSES, AnnotationJudge, Judgement, ModelJudge,
                            privileged_block)

judge = AnnotationJudge()


def st(think, answer):
    return f"<think>{think}</think><answer>{answer}</answer>"


def test_temporal_correct_wrong_time_too_broad_and_incomplete():
    good = judge(TEMPORAL, st("starts <t>4</t>s ends <t>8</t>s", "From <t>4</t>s to <t>8</t>s"))
    assert (good.verdict, good.error_cause, good.answer_score) == ("correct", "none", 1.0)
    assert good.temporal_score == 1.0 and good.consistency == 1.0 and good.spatial_score is None
    late = judge(TEMPORAL, st("at <t>30</t>s and <t>33</t>s", "From <t>30</t>s to <t>33</t>s"))
    assert (late.verdict, late.error_cause) == ("wrong", "wrong_time")
    broad = judge(TEMPORAL, st("<t>5</t>s <t>7</t>s", "From <t>0</t>s to <t>20</t>s"))
    assert broad.answer_score == pytest.approx(0.2)
    assert (broad.verdict, broad.error_cause) == ("wrong", "evidence_too_broad")
    cut = judge(TEMPORAL, "<think>the dog jumps at <t>5</t>s")
    assert (cut.verdict, cut.error_cause) == ("wrong", "incomplete_output")


def test_mcq_drifted_answer_and_deterministic():
    text = st("Option C shows a green car, so the answer is option C.", "A")
    j = judge(MCQ, text)
    assert (j.verdict, j.error_cause, j.consistency) == ("wrong", "drifted_answer", 0.0)
    assert judge(MCQ, text) == j
    tm = judge(TEMPORAL_MCQ, st("<t>12</t>s <t>19</t>s option B", "From <t>12</t>s to "
                                "<t>20</t>s\nCorrect Option: B"))
    assert tm.answer_score == pytest.approx(0.5 * (1.0 + 0.8)) and tm.verdict == "correct"


def test_spatial_wrong_object():
    j = judge(ST_FREEFORM, st("<obj>man</obj><box>[600,300,640,360]</box>at<t>4</t>s",
                              "A dog eats food."))
    assert j.error_cause == "wrong_object" and j.spatial_score == 0.0
    v = judge(VISUAL, st("<obj>pedestrian</obj><box>[50,25,150,125]</box>",
                         "<obj>pedestrian</obj><box>[50, 25, 150, 125]</box>"))
    assert (v.verdict, v.spatial_score, v.consistency) == ("correct", 1.0, 1.0)


def test_judgement_validates_fields():
    ok = dict(verdict="wrong", answer_score=0.0, consistency=1.0, temporal_score=None,
              spatial_score=0.5, error_cause="wrong_event", feedback="One. Two.")
    Judgement(**ok)
    for key, bad in [("verdict", "partly"), ("answer_score", 1.5), ("error_cause", "other"),
                     ("feedback", "Only one sentence."), ("feedback", "A. B. C. D. E."),
                     ("consistency", None)]:
        with pytest.raises(ValueError, match=key):
            Judgement(**{**ok, key: bad})


def _reply(**changes):
    value = dict(verdict="partial", answer_score=0.5, consistency=0.75, temporal_score=0.25,
                 spatial_score=None, error_cause="wrong_time",
                 feedback="The span starts late. Look at 4.0s.")
    value.update(changes)
    return json.dumps(value)


def test_model_judge_strict_json_and_fallbacks():
    prompts = []
    mj = ModelJudge(lambda p: prompts.append(p) or _reply())
    text = st("<t>6</t>s <t>9</t>s", "From <t>6</t>s to <t>9</t>s")
    j = mj(TEMPORAL, text)
    assert (j.verdict, j.temporal_score, mj.fallbacks, mj.calls) == ("partial", 0.25, 0, 1)
    assert "Verified temporal window: 4.0s to 8.0s" in prompts[0] and text in prompts[0]
    assert all(c in prompts[0] for c in ERROR_CAUSES)
    bad_replies = ["not json", "```json\n" + _reply() + "\n```", _reply(verdict="maybe"),
                   _reply(extra=1), json.dumps([1]), _reply(answer_score=2),
                   _reply(feedback="Too short.")]
    for i, bad in enumerate(bad_replies, 1):
        mj = ModelJudge(lambda p, bad=bad: bad)
        assert mj(TEMPORAL, text) == judge(TEMPORAL, text)
        assert mj.fallbacks == 1
    def boom(p):
        raise RuntimeError("model crashed")
    mj = ModelJudge(boom)
    mj(TEMPORAL, text)
    mj(MCQ, st("x", "C"))
    assert (mj.calls, mj.fallbacks) == (2, 2)
    with pytest.raises(ValueError, match="callable"):
        ModelJudge("not a model")


def test_model_judge_many_batches_one_call_and_fails_over_per_reply():
    calls = []
    text = st("<t>6</t>s <t>9</t>s", "From <t>6</t>s to <t>9</t>s")

    def many(prompts):
        calls.append(prompts)
        return [_reply(), "not json", _reply(verdict="correct", error_cause="none", temporal_score=1.0)]

    mj = ModelJudge(lambda p: _reply())
    out = mj.many([TEMPORAL, TEMPORAL, TEMPORAL], [text, text, text], generate_many=many)
    assert len(calls) == 1 and len(calls[0]) == 3 and text in calls[0][0]
    assert [j.verdict for j in out] == ["partial", judge(TEMPORAL, text).verdict, "correct"]
    assert out[1] == judge(TEMPORAL, text)  # the unparseable reply fell back to the annotations
    assert (mj.calls, mj.fallbacks) == (3, 1)

    def crash(prompts):
        raise RuntimeError("judge server down")

    mj = ModelJudge(lambda p: _reply())
    assert mj.many([TEMPORAL, MCQ], [text, "x"], generate_many=crash) == [judge(TEMPORAL, text), judge(MCQ, "x")]
    assert (mj.calls, mj.fallbacks) == (2, 2)
    short = ModelJudge(lambda p: _reply())
    assert short.many([TEMPORAL, MCQ], [text, "x"], generate_many=lambda ps: [_reply()]) == [
        judge(TEMPORAL, text), judge(MCQ, "x")]  # one reply for two prompts: the batch failed
    with pytest.raises(ValueError, match="2 examples but 1 completions"):
        mj.many([TEMPORAL, MCQ], [text])
    # without a batched generator, rollout by rollout through the single-prompt callable
    single = ModelJudge(lambda p: _reply())
    assert [j.verdict for j in single.many([TEMPORAL, MCQ], [text, "x"])] == ["partial", "partial"]


def test_privileged_block():
    j = judge(ST_FREEFORM, st("<obj>man</obj><box>[64,36,320,324]</box>at<t>4</t>s",
                              "The man picks up a basketball."))
    block = privileged_block(ST_FREEFORM, j)
    assert "Verified answer: The man in the red shirt picks up a basketball." in block
    assert "Verified temporal window: 4.0s to 10.0s" in block
    assert "Verified key-frame times: 4.0s, 10.0s" in block
    assert j.feedback in block
    mcq = privileged_block(TEMPORAL_MCQ, judge(TEMPORAL_MCQ, "junk"))
    assert "Verified answer: B\n[10.0, 20.0]" in mcq or "Verified answer: B" in mcq
    assert "Verified temporal window: 10.0s to 20.0s" in mcq
    assert "Verified key-frame times: not annotated" in mcq
