"""Literal STGR records (SPEC section 1), one per task type, shared by the reward tests.

Frames the model sees are 640 x 360, so a normalised gold box [0.1, 0.1, 0.5, 0.9] is the
pixel box [64, 36, 320, 324].
"""
import copy

ST_FREEFORM = {
    "task": "temporal-spatial free-form QA",
    "question": "What does the man in the red shirt pick up?",
    "answer": "The man in the red shirt picks up a basketball.",
    "video": "videos/5587257558.mp4",
    "duration": 18.02,
    "key_frames": [{"idx": 12, "time": 4.0}, {"idx": 30, "time": 10.0}],
    "key_items": {
        "12": {"man in red shirt": [[0.1, 0.1, 0.5, 0.9]],
               "basketball": [[0.5, 0.5, 0.6, 0.7]]},
        "30": {"basketball": [[0.2, 0.2, 0.3, 0.4], [0.7, 0.2, 0.8, 0.4]]},
    },
    "image_size": [640, 360],
}
TEMPORAL = {
    "task": "temporal QA",
    "question": "When does the dog jump over the fence?",
    "answer": "[4.0, 8.0]",
    "video": "videos/s08e18_seg02_clip_03.mp4",
    "duration": 60.67,
    "key_frames": [],
    "key_items": {},
}
TEMPORAL_MCQ = {
    "task": "temporal QA (MCQ)",
    "question": "When does the woman open the door? A. ... B. ... C. ... D. ...",
    "answer": "B\n[10.0, 20.0]",
    "video": "videos/s08e18_seg02_clip_03.mp4",
    "duration": 60.67,
    "key_frames": [],
    "key_items": {},
}
MCQ = {
    "task": "General video QA MCQ",
    "question": "What colour is the car? A. red B. blue C. green D. white",
    "answer": "C",
    "video": "videos/5587257558.mp4",
    "key_frames": [],
    "key_items": {},
}
GENERAL_FREEFORM = {
    "task": "General video QA Free-form",
    "question": "What is the weather like?",
    "answer": "It is raining heavily on the street.",
    "video": "videos/5587257558.mp4",
    "key_frames": [],
    "key_items": {},
}
VISUAL = {
    "task": "visual QA",
    "question": "Who is wearing the bag?",
    "answer": "<obj>pedestrian</obj><box>[100, 50, 300, 250]</box>",
    "image": "images/street.jpg",
    "image_size": [1000, 500],
    "image_size_refine": [500, 250],
}
ALL = [ST_FREEFORM, TEMPORAL, TEMPORAL_MCQ, MCQ, GENERAL_FREEFORM, VISUAL]


def record(base, **changes):
    out = copy.deepcopy(base)
    out.update(changes)
    return out
