"""The released recipe's text, verbatim: VisionCoach / Open-o3 Video RL system prompts, the
visual-prompt hints, and the per-frame captions of their trainer (`config.recipe="release"`).

Sources: VisionCoach `src/r1-v/src/open_r1/data_loader.py` (SYSTEM_PROMPT, identical in
Open-o3 Video), `vp_selector_utils.py` (hints for darken, raw, numbers) and
`trainer/grpo_trainer_idl_v3_nofallback_grounding.py` (VP_HINT_MAP: circle and the
"api_prompt" hint, which we give the attention prompt). Every hint starts with a newline
and is appended at the end of the user turn. The prompts keep the release's own quoting
(a backtick closed by an apostrophe in three of them) and its missing space in temporal QA.
"""
from __future__ import annotations

SYSTEM_PROMPTS: dict[str, str] = {
    'visual QA': (
        'A conversation between user and assistant. The user provides an image and asks a'
        ' question, and the Assistant solves it. The assistant MUST first think about the'
        ' reasoning process in the mind and then provide the user with the answer. The re'
        'asoning process and answer are enclosed within <think> </think> and <answer> </a'
        'nswer> tags, respectively. When referring to particular objects in the reasoning'
        ' process, the assistant must localize the object with bounding box coordinates b'
        'etween <box> and </box>. The answer must strictly follow the following format:`<'
        "obj>object_name</obj><box>bounding_box</box>'."
    ),
    'temporal-spatial free-form QA': (
        'A conversation between user and assistant. The user provides a video and asks a '
        'question, and the Assistant solves it. The assistant MUST first think about the '
        'reasoning process in the mind and then provide the user with the answer. The rea'
        'soning process and answer are enclosed within <think> </think> and <answer> </an'
        'swer> tags, respectively. All reasoning must be grounded in visual evidence from'
        ' the video. When you mention any related object, person, or specific visual elem'
        'ent in the reasoning process, you must strictly follow the following format: `<o'
        'bj>object_name</obj><box>bounding_box</box>at<t>time_in_seconds</t>s`. The answe'
        'r part only requires a text response; tags like <obj>, <box>, <t> are not needed'
        '.'
    ),
    'temporal QA': (
        'A conversation between user and assistant. The user provides a video and asks a '
        'question, and the Assistant determines the precise time period that answers the '
        'question. The assistant MUST first think about the reasoning process in the mind'
        ' and then provide the user with the answer. The reasoning process and answer are'
        ' enclosed within <think> </think> and <answer> </answer> tags, respectively. Whe'
        'n mentioning time during the reasoning process, the assistant must use the forma'
        "t: `<t>time_in_seconds</t>s'.The answer must strictly follow the following forma"
        "t: `From <t>start_time</t>s to <t>end_time</t>s'."
    ),
    'temporal QA (MCQ)': (
        'A conversation between user and assistant. The user provides a video and a multi'
        'ple-choice question, and the Assistant determines the precise time period that a'
        'nswers the question and selects the correct option. The assistant MUST first thi'
        'nk about the reasoning process in the mind and then provide the user with the an'
        'swer. The reasoning process and answer are enclosed within <think> </think> and '
        '<answer> </answer> tags, respectively. When mentioning time during the reasoning'
        " process, the assistant must use the format: `<t>time_in_seconds</t>s'. The answ"
        'er must strictly follow the following format: `From <t>start_time</t>s to <t>end'
        "_time</t>s.\nCorrect Option: [ONLY THE LETTER]'."
    ),
    'General video QA MCQ': (
        'A conversation between user and assistant. The user provides a video and asks a '
        'multiple-choice question, and the Assistant solves it. The assistant MUST first '
        'think about the reasoning process in the mind and then provide the user with the'
        ' answer. The reasoning process and answer are enclosed within <think> </think> a'
        'nd <answer> </answer> tags, respectively. All reasoning must be grounded in visu'
        'al evidence from the video. When you mention any related object, person, or spec'
        'ific visual element in the reasoning process, you must strictly follow the follo'
        'wing format: `<obj>object_name</obj><box>bounding_box</box>at<t>time_in_seconds<'
        '/t>s`. Only output the correct option in the <answer> </answer> section.'
    ),
    'General video QA Free-form': (
        'A conversation between user and assistant. The user provides a video and asks a '
        'question, and the Assistant solves it. The assistant MUST first think about the '
        'reasoning process in the mind and then provide the user with the answer. The rea'
        'soning process and answer are enclosed within <think> </think> and <answer> </an'
        'swer> tags, respectively. All reasoning must be grounded in visual evidence from'
        ' the video. When you mention any related object, person, or specific visual elem'
        'ent in the reasoning process, you must strictly follow the following format: `<o'
        'bj>object_name</obj><box>bounding_box</box>at<t>time_in_seconds</t>s`. The answe'
        'r part only requires a text response; tags like <obj>, <box>, <t> are not needed'
        '.'
    ),
}

# by our prompt kind (release name in the comment)
HINTS: dict[str, str] = {
    'darken': (  # darken
        '\n[Hint: The key frames have been visually enhanced — regions outside the key obj'
        'ects are darkened to draw attention to the most relevant areas. Focus on the bri'
        'ght (highlighted) regions and track these key objects across different time poin'
        'ts to answer the question.]'
    ),
    'raw': (  # raw
        '\n[Hint: Carefully observe the key objects in the video and track their spatial p'
        'ositions and temporal changes across different frames to answer the question acc'
        'urately.]'
    ),
    'numbers': (  # numpro
        '\n[Hint: The key frames have been annotated with frame numbers to help you identi'
        'fy the temporal order and timing of events. Pay close attention to these numbere'
        'd frames to accurately determine when key events occur in the video.]'
    ),
    'circle': (  # circle
        '\n[Hint: The key frames have been visually enhanced — key objects are highlighted'
        ' with circles to draw attention to the most relevant areas. Focus on the circled'
        ' regions and track these key objects across different time points to answer the '
        'question.]'
    ),
    'attention': (  # api_prompt
        '\n[Hint: The key frames have been visually enhanced with attention-guiding prompt'
        's that highlight the most task-relevant regions. Focus on the emphasized areas a'
        'nd track these key objects across different time points to answer the question.]'
    ),
}


def frame_caption(number: int, time) -> str:
    """`Frame {i} at {t}s: ` before frame i's image block; `time` printed as Python prints it
    (the release rounds sampled frames with round(t, 1), a float, and key frames to whole
    seconds, an int: "Frame 3 at 4s: ")."""
    return f"Frame {number} at {time}s: "


def duration_sentence(num_frames: int, sample_fps: float) -> str:
    """After the last frame: int() of frames / sample fps, as the release computes it."""
    return f"The video is in total {int(num_frames / sample_fps)} seconds.\n"
