"""Text appended to the question for each visual prompt (SPEC section 5, VisionCoach)."""
from __future__ import annotations

from visd_jax.prompt_kinds import KINDS  # noqa: F401 (re-exported)

HINTS = {
    "raw": "",
    "circle": (
        " The key frames were enhanced: the key objects are marked with red circles. "
        "Focus on the circled objects and track them over time."
    ),
    "darken": (
        " The key frames were enhanced: regions outside the key objects are darkened. "
        "Focus on the bright regions and track those objects over time."
    ),
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
    """The sentence appended to the question for prompt `kind` ("" for raw)."""
    if kind not in HINTS:
        raise ValueError(f"hint: unknown prompt kind {kind!r}; expected one of {KINDS}")
    return HINTS[kind]
