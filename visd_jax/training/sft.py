"""SFT cold-start batches: gold reasoning traces under the prompt forms RL will show.

The papers start RL from a model that can already read a visual-prompt hint (VisionCoach's
prompted rollouts) and a privileged block of verified facts (VISD's teacher prompt): a
pretrained 7B instruction model does both in context. A policy trained from scratch
cannot; its "teacher" with a privileged block it has never seen scores the student's
tokens LOWER than the student does (token signal mean about -3.6 nats on the `local`
run), which turns the direction-magnitude weights into a systematic push-down on every
sampled token. So the cold start can show each record in one of three views:

  raw         the RL prompt as is
  prompted    the record rebuilt with a visual prompt on its key frames and its hint
  privileged  the judge's privileged block (on the gold trace) before the end of the user turn

One view per SFT step (not per row), so a batch keeps the prompt length of its view and
raw batches stay in the short bucket. The view of step s is a pure function of
(seed, s): a resumed run sees the same sequence of views.
"""
from __future__ import annotations

import numpy as np

from visd_jax.judge import AnnotationJudge, privileged_block
from visd_jax.training import inputs
from visd_jax.training.coach import prompted_batch
from visd_jax.training.traces import trace

VIEWS = ("raw", "prompted", "privileged")


def view_of_step(step: int, *, seed: int, prompted_frac: float, privileged_frac: float) -> str:
    """The view SFT step `step` trains on: `prompted` with probability prompted_frac,
    `privileged` with privileged_frac, else `raw`; deterministic in (seed, step)."""
    if prompted_frac < 0 or privileged_frac < 0 or prompted_frac + privileged_frac > 1:
        raise ValueError(f"view fractions must be >= 0 and sum to <= 1, got prompted={prompted_frac}, "
                         f"privileged={privileged_frac}")
    u = np.random.default_rng([seed, step, 0x5F7]).random()
    if u < privileged_frac:
        return "privileged"
    if u < privileged_frac + prompted_frac:
        return "prompted"
    return "raw"


def view_kind(step: int, *, seed: int, kinds) -> str:
    """The visual prompt of a `prompted` step: one of `kinds`, deterministic in (seed, step)."""
    kinds = tuple(kinds)
    return kinds[int(np.random.default_rng([seed, step, 0xC0A]).integers(len(kinds)))]


def targets_of(batch: dict, rows, *, tokenizer, eos_id: int, max_claims: int | None) -> list[np.ndarray]:
    """The gold trace of each row as token ids, ending with the stop token."""
    return [np.asarray(tokenizer(trace(batch["meta"][b], max_claims=max_claims), add_special_tokens=False)["input_ids"]
                       + [eos_id], np.int32) for b in rows]


def privileged_ids(batch: dict, rows, *, tokenizer, marker: int, max_claims: int | None,
                   judge=None) -> list[np.ndarray]:
    """Each row's prompt with the judge's privileged block (judging the gold trace) inserted
    before the end of the user turn: the teacher's prompt form (rollouts.teacher_seq)."""
    judge = judge or AnnotationJudge()
    out = []
    for b in rows:
        meta = batch["meta"][b]
        j = judge(meta, trace(meta, max_claims=max_claims))
        block = np.asarray(tokenizer("\n\n" + privileged_block(meta, j), add_special_tokens=False)["input_ids"],
                           np.int32)
        out.append(inputs.insert_before_last(inputs.prompt_ids_of(batch, [b])[0], marker, block))
    return out


def prompted_rows(batch: dict, rows, kind: str, *, source, example_cfg, buckets, max_frames: int, pad_id: int):
    """(prompt ids, vision blocks of each row, rows kept raw) of `rows` rebuilt with visual
    prompt `kind` and its hint; a row that cannot be rebuilt (too long prompted, say) keeps
    its raw prompt."""
    metas = [batch["meta"][b] for b in rows]
    pb, ok = prompted_batch(source, metas, kind, example_cfg, batch_size=len(rows), buckets=buckets,
                            max_frames=max_frames, pad_id=pad_id)
    ids, media = [], []
    for i, b in enumerate(rows):
        src, r = (pb, i) if pb is not None and ok[i] else (batch, b)
        ids += inputs.prompt_ids_of(src, [r])
        media.append(inputs.blocks_of_row(src, r))
    return ids, media, int((~ok).sum())
