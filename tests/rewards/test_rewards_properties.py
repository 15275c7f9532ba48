"""Property tests: any string parses; every reward is finite and in [0, 1]; on random tag
soup every reward equals the regex oracle; a 100 KB adversarial string scores fast."""
import json
import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.rewards import oracle
from tests.rewards.records import ALL
from visd_jax.rewards import REWARDS, parse, score_group
from visd_jax.rewards.parse import as_box, decode_box

PIECES = [
    "<think>", "</think>", "<answer>", "</answer>", "<obj>", "</obj>", "<box>", "</box>",
    "<t>", "</t>", "</t>s", "at<t>", "at", "s", " to ", "From ", "[", "]", ",", " ", "\n",
    "Correct Option:", "B", "C", "(C)", "man", "red shirt", "basketball", "pedestrian",
    "4", "4.3", "10", "1.2.3", ".", "-3", "1e3", "NaN", "Infinity", "9" * 400, "[64,36,320,324]",
    "[320, 180, 384, 252]", "[128,72,192,144]", "[50, 25, 150, 125]", "[1,2,3]", "[\"1\",2,3,4]",
    "[null,1,2,3]", "[true,1,2,3]", "[[1],2,3,4]", "The man picks up a basketball.",
    "raining", "[4.0, 8.0]", "٣",
]
soup = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)
# Well-formed claims mixed with soup, so that matching, gating and several boxes get hit.
_claim = st.builds(
    lambda name, boxes, t: f"<obj>{name}</obj>" + "".join(f"<box>{b}</box>" for b in boxes)
    + f"at<t>{t}</t>s",
    st.sampled_from(["man", "red shirt guy", "basketball", "ball", "person", "", "man ball"]),
    st.lists(st.sampled_from(["[64,36,320,324]", "[320, 180, 384, 252]", "[128,72,192,144]",
                              "[448,72,480,144]", "[1,2,3]", "[0,0,640,360]"]),
             min_size=1, max_size=3),
    st.sampled_from(["4", "4.3", "5.0", "5.01", "3", "9.5", "10", "11", "12", "x", "1e400"]))
claimy = st.lists(st.one_of(_claim, st.sampled_from(PIECES)), max_size=12).map(
    lambda parts: "<think>" + " ".join(parts) + "</think><answer>C</answer>")
progress = st.floats(min_value=0.0, max_value=1.0)


def _check_range(text, p):
    for ex in ALL:
        out = score_group([text], ex, progress=p)
        for name, v in out.items():
            assert v.shape == (1,) and math.isfinite(v[0]), (name, ex["task"])
            if name != "total":
                assert 0.0 <= v[0] <= 1.0, (name, ex["task"], v[0])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), progress)
def test_random_strings_never_raise_and_stay_in_range(text, p):
    parse(text)
    _check_range(text, p)


@settings(max_examples=300, deadline=None)
@given(soup, progress)
def test_tag_soup_never_raises_and_stays_in_range(text, p):
    _check_range(text, p)


@settings(max_examples=800, deadline=None)
@given(st.one_of(soup, claimy), progress)
def test_tag_soup_rewards_equal_the_regex_oracle(text, p):
    for ex in ALL:
        want = oracle.all_rewards(text, ex, p)
        for name, fn in REWARDS.items():
            got = fn(text, ex, p)
            assert got == pytest.approx(want[name], rel=1e-12, abs=1e-15), (name, ex["task"])


box_text = st.lists(st.sampled_from(
    ["[", "]", ",", " ", "\n", "-", "0", "1", "25", "3.5", "e", "E", "+", "-1e400", "1e-3",
     "NaN", "true", "null", "\"1\"", "9" * 320, "00", ".5", "[1]"]), max_size=14).map("".join)


@settings(max_examples=1500, deadline=None)
@given(box_text)
def test_fast_box_decoding_equals_json_then_numpy(s):
    s = "[" + s + "]"
    try:
        value, ok = json.loads(s), True
    except (ValueError, RecursionError):
        value, ok = None, False
    want = (ok, as_box(value) if ok else None)
    assert decode_box(s, {}) == want


def _adversarial(n=100_000):
    claim = "<obj>basketball</obj><box>[320,180,384,252]</box><box>[1,2,3,4]</box>at<t>4.2</t>s "
    return {
        "unclosed claims": "<think>" + "<obj>a</obj><box>[" * (n // 18) + "</think><answer>x</answer>",
        "open tags": "<think>" + "<obj>" * (n // 5) + "</think><answer>",
        "digit runs": "<think><t>" + "1" * (n // 2) + "</think><answer><t>" + "2" * (n // 2),
        "deep brackets": "<think><obj>a</obj><box>" + "[" * n + "]</box>at<t>1</t>s</think>"
                         "<answer>x</answer>",
        "lazy times": "<think>" + "<obj>a</obj><box>[1,2,3,4]</box>at<t>" * (n // 38) + "</think>",
        "names without boxes": "<think>" + "<obj>a</obj>x" * (n // 13)
                               + "<box>[1,2,3,4]</box>at<t>1</t>s</think><answer>a</answer>",
        "newline boxes": "<think>" + "<box>[1,\n" * (n // 9) + "]</box></think><answer>"
                         + "<box>[\n" * 1000,
        "dense valid claims": "<think>" + claim * (n // len(claim)) + "</think><answer>From "
                              "<t>1</t>s to <t>2</t>s\nCorrect Option: B</answer>",
        "long answer": "<think>x</think><answer>" + "raining street man " * (n // 19)
                       + "</answer>",
    }


@pytest.mark.parametrize("name", list(_adversarial()))
def test_100kb_adversarial_string_scores_under_50ms(name):
    text = _adversarial()[name]
    assert len(text) >= 95_000
    for ex in ALL:
        best = math.inf
        # best of 3 in this process's CPU time: the bound is on our work, not on how many
        # other jobs share the cores (wall time on a loaded 2-core CI box is not ours)
        for _ in range(3):
            t0 = time.process_time()
            score_group([text], ex, progress=0.5)
            best = min(best, time.process_time() - t0)
        assert best < 0.050, (name, ex["task"], best)
