"""VisionCoach on the host: hard prompts -> visual prompts -> prompted rollouts -> the
self-distillation set S (SPEC section 5).

A hard example is rebuilt from its source record with the chosen visual prompt on its key
frames and the prompt's hint appended to the question (the pipeline's `make_example`, so
the prompted input goes through exactly the raw input's path). Prompted batches are padded
to the raw batch size with copies of a real row, which keeps the sampler's shapes static;
the copies never enter S.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from visd_jax.pipeline import RecordError, make_example, pad_batch
from visd_jax.training import inputs
from visd_jax.training.batch import RolloutBatch, RunContext, build_batch
from visd_jax.training.rollouts import Rollouts
from visd_jax.training.routing import hard_mask, select_for_distillation
from visd_jax.training.selector import PROMPT_KINDS

log = logging.getLogger(__name__)


@dataclasses.dataclass
class CoachResult:
    batch: RolloutBatch | None  # [S, L' + T] prompted rollouts kept for the NLL, S static
    prompt: np.ndarray  # [S] the rollout batch's prompt each row was distilled for; -1 pads
    stats: dict

    @property
    def selected(self) -> np.ndarray:
        """[S] 1 for rows in S, 0 for padding rows."""
        return (self.prompt >= 0).astype(np.int32)


def prompted_batch(source, metas, kind: str, example_cfg, *, batch_size: int, buckets, max_frames: int,
                   pad_id: int):
    """(the examples rebuilt with visual prompt `kind`, padded to `batch_size` rows; ok [len(metas)]).

    A record that fits raw may not fit prompted (the hint lengthens it past the largest
    bucket, say): its row is a copy of a rebuilt one, `ok` False, and it is logged, never
    fatal. None when no record could be rebuilt."""
    cfg = dataclasses.replace(example_cfg, prompt=kind, max_tokens=min(example_cfg.max_tokens, buckets.tokens[-1]),
                              max_patches=min(example_cfg.max_patches, buckets.patches[-1]))
    examples, ok = [], np.zeros((len(metas),), bool)
    for i, m in enumerate(metas):
        try:
            examples.append(make_example(source[m["index"]], cfg))
            ok[i] = True
        except RecordError as e:
            log.warning("record %s cannot be rebuilt with visual prompt %s: %s", e.record_id, kind, e.reason)
            examples.append(None)
    if not ok.any():
        return None, ok
    fill = examples[int(np.flatnonzero(ok)[0])]
    examples = [e if e is not None else fill for e in examples] + [fill] * (batch_size - len(examples))
    return pad_batch(examples, batch_size=batch_size, buckets=buckets, max_frames=max_frames, pad_id=pad_id), ok


def coach(raw: Rollouts, batch: dict, *, do_rollout, ctx: RunContext, source, selector, example_cfg, buckets,
          max_frames: int, threshold: float, top_n: int, rule: str) -> CoachResult:
    """`do_rollout(prompted_batch) -> Rollouts` samples G completions of every row.

    S holds at most `top_n` rows per prompt (static size N * top_n); each row names its
    prompt, so the update plan (`routing.minibatch_rows`) learns it in the minibatch that
    holds that prompt's rollouts, with the release's per-prompt weight."""
    n = len(raw.rows)
    g = raw.tokens.shape[0] // n
    hard = hard_mask(raw.scores["total"], threshold=threshold)
    stats = {"coach/hard_frac": float(hard.mean())}
    size = n * top_n
    none = np.full((size,), -1, np.int32)
    if not hard.any() or top_n == 0:
        return CoachResult(None, none, {**stats, "coach/sd_rows": 0.0})
    hard_idx = np.flatnonzero(hard)
    metas = [batch["meta"][raw.rows[i]] for i in hard_idx]
    cands = selector.candidates(metas)
    kinds = [k for k in PROMPT_KINDS if any(k in c for c in cands)]
    results, built = {}, {}
    for kind in kinds:
        pb, built[kind] = prompted_batch(source, metas, kind, example_cfg, batch_size=n, buckets=buckets,
                                         max_frames=max_frames, pad_id=ctx.pad_id)
        if pb is not None:
            results[kind] = (pb, do_rollout(pb))
    # a kind whose rebuild failed for a prompt is no candidate for it; no kind left: not coached
    cands = [tuple(k for k in c if k in results and built[k][i]) for i, c in enumerate(cands)]
    stats["coach/unbuildable"] = float(sum(not c for c in cands))
    chosen = []
    for i, c in enumerate(cands):
        if not c:
            chosen.append(None)
            continue
        best = max(c, key=lambda k: (results[k][1].scores["total"][i].mean(), -PROMPT_KINDS.index(k)))
        chosen.append(best)
        # what was applied: a box prompt on a record without boxes is rebuilt raw
        applied = results[best][0]["meta"][i]["prompt"]
        stats[f"coach/kind_{applied}"] = stats.get(f"coach/kind_{applied}", 0.0) + 1.0 / len(cands)

    picked = []  # (kind, prompted row i, sample g, raw prompt h)
    prompted_means = []
    for i, (h, kind) in enumerate(zip(hard_idx, chosen)):
        if kind is None:
            continue
        ro = results[kind][1]
        prompted_means.append(float(ro.scores["total"][i].mean()))
        keep = select_for_distillation(raw_G={k: v[h] for k, v in raw.scores.items()},
                                       prompted_G={k: v[i] for k, v in ro.scores.items()}, top_n=top_n, rule=rule)
        picked += [(kind, i, int(j), int(h)) for j in np.flatnonzero(keep)]
    stats["coach/prompted_reward"] = float(np.mean(prompted_means)) if prompted_means else 0.0
    stats["coach/raw_reward_hard"] = float(raw.scores["total"][hard_idx].mean())
    stats["coach/sd_rows"] = float(len(picked))
    if not picked:
        return CoachResult(None, none, stats)

    prompt = none.copy()
    prompt[: len(picked)] = [h for *_, h in picked]
    picked += [picked[0]] * (size - len(picked))  # static S; padding rows are in no prompt
    groups = sorted({(kind, i) for kind, i, _, _ in picked})  # each prompted example's media once
    ids = [inputs.prompt_ids_of(results[kind][0], [i])[0] for kind, i, _, _ in picked]
    toks = np.stack([results[kind][1].tokens[i * g + j] for kind, i, j, _ in picked]).astype(np.int32)
    tmask = np.stack([results[kind][1].mask[i * g + j] for kind, i, j, _ in picked]).astype(np.int32)
    media = [inputs.blocks_of_row(results[kind][0], i) for kind, i in groups]
    # at most one kind per hard prompt, each rebuilt with the raw example's frames: the SD
    # media fit in as many slots as the raw batch's, whose count keeps one shape per step
    # (else each count of coached prompts would compile the update anew)
    sd = build_batch(ctx, ids, toks, tmask, [groups.index((kind, i)) for kind, i, _, _ in picked], media,
                     min_slots=sum(map(len, raw.media)))
    return CoachResult(sd, prompt, stats)
