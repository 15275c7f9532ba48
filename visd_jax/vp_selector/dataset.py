"""Stage 1: which visual prompt helps each training example (paper section 3.3, data).

For every example and each of the five kinds applied to its key frames (the coach's own
`prompted_batch`, so the input is exactly what RL would coach with), each proxy reasoner
samples G answers; we keep per kind and proxy the mean answer accuracy (`ans_acc`), the mean
grounding score (the thinking rewards: temporal point + segment + spatial) and the mean total
reward. The label is the kind with the highest (accuracy + grounding) averaged over proxies,
ties to the earlier kind (raw first: a prompt must beat no prompt to be chosen); a box prompt
on a record without boxes is not applicable and no candidate.

The file is JSON lines, one example per line, appended a chunk at a time: an interrupted
collection resumes after the last whole line and never scores an example twice.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging

import numpy as np

from visd_jax.prompt_kinds import KINDS

log = logging.getLogger(__name__)
GROUNDING = ("thk_temporal_point", "thk_temporal_segment", "thk_spatial")


@dataclasses.dataclass
class Proxy:
    """A reasoner that answers prompted examples: a name and a built `Trainer` (its policy,
    sampler, tokenizer, data source and example settings)."""

    name: str
    trainer: object


def is_heldout(rid: str, fraction: float) -> bool:
    """A stable split by id (a hash, not the order): the same examples are held out on
    every machine and every rerun."""
    h = int(hashlib.sha1(rid.encode()).hexdigest()[:8], 16)
    return h % 10_000 < fraction * 10_000


def score_of(entry: dict) -> float:
    """(accuracy + grounding) of one kind, averaged over the proxies."""
    return float(np.mean(entry["acc"]) + np.mean(entry["grounding"]))


def label_of(scores: dict[str, dict]) -> str:
    """The kind with the best mean (accuracy + grounding); ties go to the earlier kind."""
    kinds = [k for k in KINDS if k in scores]
    return max(kinds, key=lambda k: (score_of(scores[k]), -KINDS.index(k)))


def read_rows(path) -> list[dict]:
    """The dataset's rows; a torn last line (a kill mid-write) is dropped from the file."""
    from visd_jax.training.metrics import read_jsonl_appendable

    return read_jsonl_appendable(path)


def collect(proxies: list[Proxy], path, *, num_generations: int, holdout: float, seed: int = 0,
            limit: int | None = None, progress: bool = False) -> dict:
    """Appends a row per example not yet in `path`; returns counts. Every proxy reads the
    same records (the same data config), rebuilt per kind with its own example settings."""
    import jax

    from visd_jax.pipeline.records import record_id
    from visd_jax.training.coach import prompted_batch
    from visd_jax.training.rollouts import rollout

    first = proxies[0].trainer
    source = first.source
    done = {r["id"] for r in read_rows(path)}
    todo = []
    for i in range(len(source) if limit is None else min(limit, len(source))):
        rec = source.record(i) if hasattr(source, "record") else source[i].get("record")
        if rec is None:
            continue
        if record_id(rec, i) not in done:
            todo.append(i)
    n = first.cfg.rl.prompts_per_step
    key = jax.random.key(seed)
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="selector data", unit="ex", disable=not progress)
    stats = {"written": 0, "skipped": 0, "already": len(done)}
    for c in range(0, len(todo), n):
        chunk = todo[c:c + n]
        metas = [{"index": i} for i in chunk]
        scores = [dict() for _ in chunk]
        ids = [None] * len(chunk)
        for k, kind in enumerate(KINDS):
            built = []  # proxies with the same example settings share one rebuilt batch (one decode)
            for p, proxy in enumerate(proxies):
                t = proxy.trainer
                how = (t.example_cfg, t.buckets, t.pad_id)
                pb, ok = next((b for h, b in built if h == how), (None, None))
                if ok is None:
                    pb, ok = prompted_batch(t.source, metas, kind, t.example_cfg, batch_size=n, buckets=t.buckets,
                                            max_frames=t.example_cfg.frame_slots, pad_id=t.pad_id)
                    built.append((how, (pb, ok)))
                if pb is None:
                    continue
                ro = rollout(t.sampler, pb, list(range(len(chunk))), ctx=t.ctx,
                             key=jax.random.fold_in(key, (chunk[0] * len(proxies) + p) * len(KINDS) + k),
                             num_samples=num_generations, progress=1.0)
                for j in np.flatnonzero(ok):
                    ids[j] = pb["meta"][j]["id"]
                    if pb["meta"][j]["prompt"] != kind:  # a box prompt on a record without boxes: not
                        continue  # applicable (it was rebuilt raw), so it is no label for this example
                    e = scores[j].setdefault(kind, {"acc": [], "grounding": [], "total": []})
                    e["acc"].append(float(ro.scores["ans_acc"][j].mean()))
                    e["grounding"].append(float(sum(ro.scores[g][j] for g in GROUNDING).mean()))
                    e["total"].append(float(ro.scores["total"][j].mean()))
        with open(path, "a") as f:
            for j, i in enumerate(chunk):
                # raw is the baseline every label is measured against; each kind by every proxy
                whole = {k: e for k, e in scores[j].items() if len(e["acc"]) == len(proxies)}
                if "raw" not in whole:
                    stats["skipped"] += 1
                    log.warning("example %d: no raw score from every proxy (unusable record), skipped", i)
                    continue
                f.write(json.dumps({"id": ids[j], "index": i, "heldout": is_heldout(ids[j], holdout),
                                    "label": label_of(whole), "scores": whole}) + "\n")
                stats["written"] += 1
        bar.update(len(chunk))
    bar.close()
    return stats


def summary(rows: list[dict]) -> dict:
    """Size and label distribution, train and held-out."""
    out = {}
    for split, part in (("train", [r for r in rows if not r["heldout"]]), ("heldout", [r for r in rows if r["heldout"]])):
        counts = {k: sum(r["label"] == k for r in part) for k in KINDS}
        out[split] = {"examples": len(part), "labels": counts}
    return out
