"""Text appended to the question for each visual prompt (SPEC section 5, VisionCoach).

`raw` and `darken` are the release's strings verbatim (`vp_selector_utils.py`, through
`text/release.py`: a leading newline, em dashes); the release's trainer never uses the
other three kinds, so circle, numbers and attention keep the paper's wording (section 3.2:
the hint describes the prompt applied and what to track).
"""
from __future__ import annotations

from visd_jax.prompt_kinds import KINDS  # noqa: F401 (re-exported)
from visd_jax.text.release import HINTS as _RELEASE

HINTS = {
    "raw": _RELEASE["raw"],
    "circle": (
        " The key frames were enhanced: the key objects are marked with red circles. "
        "Focus on the circled objects and track them over time."
    ),
    "darken": _RELEASE["darken"],
    "numbers": (
        " Each frame shows its frame number in red digits at the bottom-right corner. "
        "Use the frame numbers to locate the key moments in time."
    ),
    "attention": (
        " The key frames were enhanced: regions relevant to the question are kept bright "
        "and the rest is faded. Focus on the highlighted regions and track them over time."
    ),
}


def hint(kind: str) -> str:
    """The sentence appended to the question for prompt `kind`."""
    if kind not in HINTS:
        raise ValueError(f"hint: unknown prompt kind {kind!r}; expected one of {KINDS}")
    return HINTS[kind]
