"""VISD + VisionCoach (`visd_coach`) on Qwen2.5-VL: the main job.

    python -m experiments.visd_v5e                       # the `local` variant (CPU, minutes)
    python -m experiments.visd_v5e --config=experiments/visd_v5e.py:v5e_8 \
        --config.model.path=/path/Qwen2.5-VL-7B --config.data.annotations=stgr.json ...

Variants (each checked by `python -m tpu.compile --config=experiments/visd_v5e.py:VARIANT`;
bench/RESULTS.md has the tables):
  local   tiny model, synthetic dataset, SFT cold start then visd_coach RL, 2 CPU cores.
  v5e_8   Qwen2.5-VL-3B (from --config.model.path) on the 8 chips of a v5e-8, FSDP.
  v5e_16  Qwen2.5-VL-7B on a v5e-16: FSDP 8 x tensor 2. A 7B train state with float32
          master weights, Adam and the float32 EMA teacher is 13.5 GiB per chip on 8 chips,
          leaving no room for a step: 7B needs 16 chips.
  v5e_64  Qwen2.5-VL-7B on a v5e-64: 4-way data parallel over v5e_16's FSDP 8 x tensor 2,
          32 prompts a step.
All: STGR annotations + video root, float32 master weights under bfloat16 compute, scanned
and rematerialised layers.
"""
from __future__ import annotations

import ml_collections

from visd_jax.training.config import base_config

VARIANTS = ("local", "v5e_8", "v5e_16", "v5e_64")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = arg or "local"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} for experiments/visd_v5e.py; choose from {VARIANTS}")
    c = base_config()
    c.mode = "visd_coach"
    c.variant = variant
    if variant == "local":
        c.workdir = "workdir/visd_v5e_local"
        c.model.preset = "small"
        # 20 examples (4 clips x 5 tasks) and 5 prompts per step: an RL epoch is 4 steps, so
        # the first and the last 10% of the 40 RL steps each see every prompt exactly once and
        # the reward comparison is not at the mercy of which tasks a window happened to draw
        c.data.update(source="synthetic", synthetic_examples=20, max_frames=4, min_frames=4,
                      max_pixels=56 * 56, min_pixels=28 * 28, max_prompt_tokens=512,
                      # raw prompts (<= 240 tokens) in 256; visually prompted ones (+ hint) and
                      # the teacher's (+ privileged block with the judge's feedback, <= ~420)
                      # in 448: two prompt shapes, each compiled once
                      token_buckets=(256, 448))
        # two grounded claims per trace keep completions short enough for the small model; a
        # quarter of the SFT steps show the visual-prompt form and a quarter the teacher's
        # privileged form, so both can be read when RL starts (training/sft.py says why)
        c.sft.update(steps=120, batch_size=8, lr=3e-3, warmup_steps=10, max_claims=2,
                     prompted_frac=0.25, privileged_frac=0.25)
        # 5 prompts x 4 rollouts in 2 minibatches (4 made each AdamW step a 1-prompt
        # estimate) at lr 1e-4 (3e-5 left the policy where SFT put it); top_p stays the
        # paper's 0.95: 1.0 let tail tokens break the format of half the rollouts
        c.rl.update(steps=40, prompts_per_step=5, num_generations=4, minibatches=2, max_new_tokens=160,
                    lr=1e-4, warmup_steps=2)
        # the tiny run is short: scale the paper's 600-step ramp to the run length
        c.visd.update(lambda_steps=30)
        c.checkpoint.update(every=10, keep=2)
        return c
    c.workdir = ""  # required on the command line: gs://BUCKET/run
    # float32 master weights and second moment, bfloat16 compute and first moment: at lr 1e-6
    # a bf16 weight's ulp (~1.2e-4 at 0.02) would round every update away; the teacher float32
    # for the same reason (its 1% EMA steps). Layers scanned (compile time flat in depth) and
    # rematerialised. tpu/compile.py measures what each choice costs (bench/RESULTS.md).
    c.model.update(preset="", path="", param_dtype="float32", dtype="bfloat16", mu_dtype="bfloat16",
                   remat=True, scan_layers=True)
    c.visd.teacher_dtype = "float32"
    # 16 frames of a 16:9 video at the pixel budget are ~960 vision tokens; with the system
    # prompt, question, hint or the judge's privileged block a prompt stays under 2048
    c.data.update(source="stgr", max_frames=16, num_workers=8, max_prompt_tokens=2048, token_buckets=(1024, 2048))
    c.rl.update(steps=1000, prompts_per_step=8, num_generations=4, minibatches=4, max_new_tokens=768)
    # a minibatch's 8 rows (8 prompts x 4 rollouts / 4 minibatches) split over at most 8 ways
    # of (data, fsdp); more chips than rows would hold every row on each: v5e_16 adds tensor
    # parallelism instead, v5e_64 more prompts per step
    if variant == "v5e_8":
        c.mesh.update(data=1, fsdp=-1, tensor=1)
    elif variant == "v5e_16":
        c.mesh.update(data=1, fsdp=-1, tensor=2)
    else:
        # v5e_16 four times over: 64 prompts a step (a row and an SD row on every chip) needed
        # 25 GiB for the update; 32 prompts keep v5e_16's half a row per chip
        c.mesh.update(data=4, fsdp=-1, tensor=2)
        c.rl.prompts_per_step = 32
    return c


if __name__ == "__main__":  # grain spawns worker processes: keep start-up under this guard
    from visd_jax.training import cli

    cli.main(__file__)
