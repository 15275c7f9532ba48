"""The fixed training text of the tiny BPE: the project's prompts, answers and data words.

Deterministic (no randomness, no files), so the tokenizer is a function of this module.
It covers what the model reads and writes here: system prompts, questions and answers
of the synthetic set, the grounding grammar, numbers and times.
"""
from __future__ import annotations

from visd_jax.text import system

_COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "cyan", "black",
            "gray", "brown", "pink")
_SHAPES = ("ball", "cube", "triangle", "diamond", "person", "car", "dog", "cat", "cup",
           "table", "chair", "door", "book", "phone", "box", "bottle")
_WORDS = (
    "The video shows a scene where the object moves from the left to the right. "
    "At first it is near the top, then it goes down to the bottom of the frame. "
    "Which object appears first in the video? How many different objects appear? "
    "What colour is the shape? During which time span is it visible? Where does it move "
    "while it is visible? I can see the object clearly in this frame, so the answer is "
    "correct. The key frames were enhanced: regions outside the key objects are darkened, "
    "focus on the bright regions and track those objects over time. A red circle marks "
    "the key objects; the frame numbers are drawn at the bottom right corner; the "
    "highlighted regions show where to look. Let me check the evidence again. "
    "Answer Option Correct because therefore however first second then finally person "
    "holding opens closes walks runs picks puts enters leaves before after during while."
)

# Common English words, so that free-form answers and judge feedback segment sensibly.
_COMMON = """
about above across action activity actually add afraid again against age ago agree air all
almost alone along already also although always among amount angle animal another answer
any anyone anything appear area arm around arrive art ask attention available away back
background bag bank base beach bear beautiful become bed begin behind believe below beside
best better between big bird black blank blue board boat body bottom boy bread break bright
bring brother build building busy but buy call camera can carry case catch center change
check child choose circle city class clean clear climb clock close clothes cloud colour come
common compare complete contain continue cook corner count country cover cross crowd cut dark
day decide describe detail different direction distance down draw dress drink drive drop
each early earth east eat edge effect either else empty end enough enter entire evening
event every example explain eye face fact fall family far fast field fill find fine finish
fire fish floor flower fly follow food foot force forest form forward four frame free friend
front full game garden girl give glass go good grass great green ground group grow half hand
happen happy hard head hear heavy help here high hill hold home horse hour house how image
important inside interest island keep kind kitchen know lake land large last late laugh lead
learn left leg less letter level light line list listen little live long look low machine
main make man many map mark match material mean measure middle might minute mirror moment
money month more morning mountain mouth move much music must name near need never new next
night none north nothing notice number object ocean off office often old once only open order
other outside over own page paint paper part pass past people picture piece place plan plant
play point position possible power present press probably problem produce pull push question
quick quiet rain reach read ready reason record region remember rest result return right river
road rock room round rule same scene screen sea season seat second see seem sentence set
several shadow shape share short should show side sign simple since sing sit size sky sleep
slow small smile snow some something sometimes song soon sound south space speak special
speed stand start state stay step still stop story street strong student study such sun
sure surface take talk tall teacher tell than thing think though thought three through time
today together top toward town track train tree true turn two under until upper use usual
very view visible voice wait walk wall want warm watch water wave way wear weather week well
west what wheel when where which white whole why wide window winter with without woman wood
word work world write wrong year yellow young zero one two three four five six seven eight
nine ten eleven twelve seconds minutes frames pixels coordinates grounding evidence claim
"""


def corpus_lines():
    """Yields the corpus line by line (the BPE trainer streams it)."""
    for task in system.TASKS:
        yield system.system_prompt(task)
    yield _WORDS
    words = _COMMON.split()
    for i in range(0, len(words), 12):
        yield " ".join(words[i:i + 12]).capitalize() + "."
    for c in _COLOURS:
        for s in _SHAPES:
            name = f"{c} {s}"
            yield f"Where does the {name} move while it is visible?"
            yield f"The {name} moves from the left to the right. The {s} is {c}."
            yield f"<obj>{name}</obj><box>[12,34,156,78]</box>at<t>1.5</t>s"
    for i in range(1, 65):
        t = i * 0.5
        yield system.frame_text(i, t) + system.duration_text(t * 2)
        yield f"From <t>{t:.1f}</t>s to <t>{t + 1.5:.2f}</t>s\nCorrect Option: {'ABCD'[i % 4]}"
        yield f"<think>At <t>{t}</t>s the object is at <box>[{i},{2 * i},{3 * i},{4 * i}]</box>" \
              f".</think><answer>{'ABCD'[i % 4]}</answer>"
    for n in range(0, 1000, 7):
        yield f"[{n}, {n + 13}] {n / 10:.1f} {n / 100:.2f} ({n}) A. {n} B. {n + 1}"
