"""The linear scanners give exactly what the reference's regular expressions give.

The oracle is Python's `re` with the patterns of the reference reward code; inputs are
small random tag soup where `re` is fast, so both can run on thousands of strings.
"""
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from visd_jax.rewards import _scan

CLAIM_RE = re.compile(r"<obj>(.*?)</obj>((?:<box>\[.*?\]</box>)+)at<t>(.*?)</t>s", re.DOTALL)
BRACKET_RE = re.compile(r"\[.*?\]")
TAGGED_BOX_RE = re.compile(r"<box>(\[.*?\])</box>")
WORD_OBJ_BOX_RE = re.compile(r"<obj>(\w+)</obj><box>(\[.*?\])</box>")
SPAN_RE = re.compile(r"<t>(\d+\.?\d*)</t>s to <t>(\d+\.?\d*)</t>s")
TIME_RE = re.compile(r"<t>([\d.]+)</t>s")

PIECES = ["<obj>", "</obj>", "<box>", "</box>", "[", "]", "<box>[", "]</box>", "at<t>",
          "</t>s", "<t>", "</t>", "at", "s", "\n", "1", "2.5", ".", "a", "ball", " ",
          "[1,2,3,4]", "<think>", "</think>", "<answer>", "</answer>", " to ", "٣"]
soup = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


@settings(max_examples=3000, deadline=None)
@given(soup)
def test_claim_matches_equal_re_finditer(text):
    assert _scan.claim_matches(text) == [m.groups() for m in CLAIM_RE.finditer(text)]


@settings(max_examples=1500, deadline=None)
@given(soup)
def test_box_scanners_equal_re(text):
    assert _scan.bracket_strings(text) == BRACKET_RE.findall(text)
    assert _scan.tagged_box_strings(text) == TAGGED_BOX_RE.findall(text)
    first = TAGGED_BOX_RE.search(text)
    assert _scan.tagged_box_strings(text, first_only=True) == ([first.group(1)] if first else [])
    assert _scan.has_word_obj_box(text) == (WORD_OBJ_BOX_RE.search(text) is not None)


@settings(max_examples=1500, deadline=None)
@given(soup)
def test_time_patterns_equal_reference_patterns(text):
    mine, ref = _scan.ANSWER_SPAN_RE.search(text), SPAN_RE.search(text)
    assert (mine and mine.groups()) == (ref and ref.groups())
    assert _scan.THINK_TIME_RE.findall(text) == TIME_RE.findall(text)


@settings(max_examples=1000, deadline=None)
@given(soup)
def test_first_block_equals_lazy_dotall_search(text):
    for a, b in (("<think>", "</think>"), ("<answer>", "</answer>")):
        m = re.search(f"{a}(.*?){b}", text, re.DOTALL)
        assert _scan.first_block(text, a, b) == (m.group(1) if m else None)


def test_claim_group_stretches_like_the_lazy_regex():
    # A mention without a box: the reference's lazy name group runs on to the next valid
    # `</obj><box>`, so the name carries the text in between.
    text = "<obj>cat</obj> sits. <obj>dog</obj><box>[1,2,3,4]</box>at<t>3</t>s"
    assert _scan.claim_matches(text) == [("cat</obj> sits. <obj>dog", "<box>[1,2,3,4]</box>",
                                          "3")]
