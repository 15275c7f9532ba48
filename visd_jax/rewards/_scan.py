"""Linear-time scanners that reproduce the reference trainers' regular expressions.

The reference reward code (VisionCoach release `src/r1-v/src/open_r1/reward_func.py`, which
extends Open-o3 Video's) reads rollouts with Python regular expressions such as

    <obj>(.*?)</obj>((?:<box>\\[.*?\\]</box>)+)at<t>(.*?)</t>s      (re.DOTALL)

Lazy groups followed by more pattern backtrack: on tag soup (many `<obj>` without a valid
continuation) `re.finditer` of that pattern is quadratic or worse. The functions here give
exactly the matches `re` would give (the test suite checks this against `re` itself on random
tag soup) but only use `str.find`, `bisect` and possessive patterns, so every one runs in
O(n log n) of the input length.

The trick for the claim pattern: a lazy group `X.*?Y REST` ends at the *earliest* `Y` after
which `REST` matches. Whether `REST` matches at a position only depends on text to its
right, so one right-to-left pass over the few anchor positions (`]</box>`, `<box>[`,
`at<t>`, `</t>s`, `</obj>`) decides it for all of them.
"""
from __future__ import annotations

import bisect
import json
import re

# Possessive quantifiers (Python >= 3.11) never give characters back, so these cannot
# backtrack; they accept the same strings as the reference's `\d+\.?\d*` and `[\d.]+`.
_NUM = r"\d++(?:\.\d*+)?+"
ANSWER_SPAN_RE = re.compile(rf"<t>({_NUM})</t>s to <t>({_NUM})</t>s")
THINK_TIME_RE = re.compile(r"<t>([\d.]++)</t>s")
_WORD_RE = re.compile(r"\w++")


_LITERALS: dict[str, re.Pattern] = {}


def positions(text: str, needle: str) -> list[int]:
    """All start positions of `needle` in `text`, ascending. Overlaps cannot occur for the
    tags used here (none is a proper suffix-prefix of itself), so a literal scan suffices."""
    pat = _LITERALS.get(needle)
    if pat is None:
        pat = _LITERALS[needle] = re.compile(re.escape(needle))
    return [m.start() for m in pat.finditer(text)]


def first_block(text: str, open_tag: str, close_tag: str) -> str | None:
    """`re.search(open + '(.*?)' + close, text, re.DOTALL).group(1)`, or None.

    The first opening tag wins because if it has no closing tag after it, no later one has.
    """
    i = text.find(open_tag)
    if i == -1:
        return None
    j = text.find(close_tag, i + len(open_tag))
    if j == -1:
        return None
    return text[i + len(open_tag):j]


class _Next:
    """Monotone 'next occurrence at or after pos' queries in amortised O(1)."""

    def __init__(self, text: str, needle: str):
        self.text, self.needle, self.at = text, needle, -2

    def __call__(self, pos: int) -> int:
        if self.at != -1 and self.at < pos:
            self.at = self.text.find(self.needle, pos)
        return self.at


# A boxes block with no stray brackets or newlines: then the `[...]` pieces are exactly
# the lazy findall's matches, and one C-level findall finds them.
_CLEAN_BLOCK_RE = re.compile(r"(?:<box>\[[^\[\]\n]*+\]</box>)++")
_CLEAN_BRACKET_RE = re.compile(r"\[[^\[\]\n]*+\]")


def bracket_strings(text: str) -> list[str]:
    """`re.findall(r'\\[.*?\\]', text)` (no DOTALL: a match may not cross a newline)."""
    if _CLEAN_BLOCK_RE.fullmatch(text):
        return _CLEAN_BRACKET_RE.findall(text)
    out = []
    next_close, next_nl = _Next(text, "]"), _Next(text, "\n")
    pos = 0
    while True:
        a = text.find("[", pos)
        if a == -1:
            return out
        b = next_close(a + 1)
        if b == -1:
            return out
        nl = next_nl(a + 1)
        if nl == -1 or nl > b:
            out.append(text[a:b + 1])
            pos = b + 1
        else:
            pos = a + 1


def tagged_box_strings(text: str, first_only: bool = False) -> list[str]:
    """`re.findall(r'<box>(\\[.*?\\])</box>', text)` (no DOTALL)."""
    out = []
    next_end, next_nl = _Next(text, "]</box>"), _Next(text, "\n")
    pos = 0
    while True:
        a = text.find("<box>[", pos)
        if a == -1:
            return out
        b = next_end(a + 6)
        if b == -1:
            return out
        nl = next_nl(a + 6)
        if nl == -1 or nl > b:
            out.append(text[a + 5:b + 1])
            if first_only:
                return out
            pos = b + 7
        else:
            pos = a + 1


def has_word_obj_box(text: str) -> bool:
    """`re.search(r'<obj>(\\w+)</obj><box>(\\[.*?\\])</box>', text) is not None`."""
    next_end, next_nl = _Next(text, "]</box>"), _Next(text, "\n")
    for i in positions(text, "<obj>"):
        m = _WORD_RE.match(text, i + 5)
        if m is None or not text.startswith("</obj><box>[", m.end()):
            continue
        a = m.end() + 11  # index of '['
        b = next_end(a + 1)
        if b == -1:
            return False
        nl = next_nl(a + 1)
        if nl == -1 or nl > b:
            return True
    return False


def decode_json(s: str):
    """`json.loads` that reports failure as None (deep nesting raises RecursionError)."""
    try:
        return json.loads(s)
    except (ValueError, RecursionError):
        return None


def claim_matches(think: str) -> list[tuple[str, str, str]]:
    """(name, boxes block, time text) for each match of the reference claim pattern.

    Exactly `[m.groups() for m in re.finditer(r"<obj>(.*?)</obj>((?:<box>\\[.*?\\]</box>)+)"
    r"at<t>(.*?)</t>s", think, re.DOTALL)]`, in O(n log n).
    """
    ends = positions(think, "]</box>")        # k: index of ']' closing a box
    box_starts = set(positions(think, "<box>["))
    at_t = set(positions(think, "at<t>"))
    last_tclose = think.rfind("</t>s")
    n = len(ends)
    # nxt[i]: index of the earliest box end >= ends[i] after which the rest of the claim
    # (more boxes, or `at<t>...</t>s`) matches; n when there is none.
    nxt = [n] * (n + 1)

    def first_valid_end(p: int) -> int:
        j = nxt[bisect.bisect_left(ends, p)]
        return ends[j] if j < n else -1

    def boxes_then_time(q: int) -> bool:  # `(?:<box>\[.*?\]</box>)+at<t>.*?</t>s` at q
        return q in box_starts and first_valid_end(q + 6) != -1

    def time_at(q: int) -> bool:  # `at<t>.*?</t>s` at q
        return q in at_t and last_tclose >= q + 5

    for i in range(n - 1, -1, -1):
        q = ends[i] + 7
        ok = time_at(q) or boxes_then_time(q)
        nxt[i] = i if ok else nxt[i + 1]

    closes = positions(think, "</obj>")
    m = len(closes)
    nxt_close = [m] * (m + 1)
    for i in range(m - 1, -1, -1):
        nxt_close[i] = i if boxes_then_time(closes[i] + 6) else nxt_close[i + 1]

    out = []
    pos = 0
    for i in positions(think, "<obj>"):
        if i < pos:
            continue
        c = nxt_close[bisect.bisect_left(closes, i + 5)]
        if c == m:
            break  # no valid `</obj>` after this `<obj>`, hence none after any later one
        j = closes[c]
        q = j + 6
        while True:  # greedy `+` over boxes, each box's content as short as possible
            e = first_valid_end(q + 6) + 7
            if boxes_then_time(e):
                q = e
            else:
                break
        t0 = e + 5
        t1 = think.find("</t>s", t0)
        out.append((think[i + 5:j], think[j + 6:e], think[t0:t1]))
        pos = t1 + 5
    return out
