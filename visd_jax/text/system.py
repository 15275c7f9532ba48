"""System prompts per task (SPEC section 2) and the user-turn text around the frames.

Every prompt asks for `<think>...</think><answer>...</answer>` with grounded claims
`<obj>NAME</obj><box>[x1,y1,x2,y2]</box>at<t>SECONDS</t>s` in the pixel coordinates of the
frames the model sees; the answer format depends on the task.
"""
from __future__ import annotations

TASKS: tuple[str, ...] = (
    "temporal-spatial free-form QA",
    "temporal QA",
    "temporal QA (MCQ)",
    "General video QA MCQ",
    "General video QA Free-form",
    "visual QA",
)

_GROUNDING = (
    "Think step by step inside <think></think> and put the final answer inside "
    "<answer></answer>. In your thinking, ground every object you mention as "
    "<obj>NAME</obj><box>[x1,y1,x2,y2]</box>at<t>SECONDS</t>s, with the box in pixel "
    "coordinates of the frame you saw and the time in seconds; an object seen in several "
    "places may carry several <box>[...]</box>."
)
_ANSWER = {
    "temporal-spatial free-form QA": "Inside <answer></answer> give a short free-form answer.",
    "temporal QA": ("Inside <answer></answer> give the time span as "
                    "From <t>START</t>s to <t>END</t>s."),
    "temporal QA (MCQ)": ("Inside <answer></answer> give the time span as "
                          "From <t>START</t>s to <t>END</t>s, then a new line with "
                          "Correct Option: X, where X is the letter of the right option."),
    "General video QA MCQ": "Inside <answer></answer> give only the letter of the right option.",
    "General video QA Free-form": "Inside <answer></answer> give a short free-form answer.",
    "visual QA": "Inside <answer></answer> give a short free-form answer.",
}
_MEDIA = {True: "You are given a video as numbered frames with their times.",
          False: "You are given an image."}


def system_prompt(task: str) -> str:
    """The system prompt of a task type (SPEC section 1 names); ValueError on unknown tasks."""
    if task not in _ANSWER:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    return f"{_MEDIA[task != 'visual QA']} {_GROUNDING} {_ANSWER[task]}"


def duration_text(duration: float) -> str:
    return f"The video lasts {duration:.1f} seconds."


def frame_text(i: int, t: float) -> str:
    """`Frame i at {t}s: ` preceding frame group i's vision tokens (i counts from 1)."""
    return f"Frame {i} at {t:.1f}s: "
