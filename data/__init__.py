"""Synthetic grounded video QA: seeded H.264 clips of named, moving objects with STGR labels.

`generate(cache_dir, seed=, num_clips=)` writes (or reuses) clips + annotations.jsonl;
`data.tfds_builder.SynthVideoQA` exposes the same records as a TFDS (array_record) dataset.
"""
from data.questions import IMAGE_TASK, TASKS
from data.synth import SynthConfig, SynthDataset, encode_mp4, generate, make_clip

__all__ = ["IMAGE_TASK", "TASKS", "SynthConfig", "SynthDataset", "encode_mp4", "generate",
           "make_clip"]
