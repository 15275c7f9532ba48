"""Evaluating a policy: answers to an evaluation set, scored, written, summarised.

`evaluate` generates one answer per example with the project's sampler (greedy by default,
batched, prompts and vision blocks bucketed as in training, on the run's mesh), scores it
with the seven rewards, and appends a row per example to `predictions.jsonl`:

  {"id", "task", "question", "gold", "completion", "answer" (the parsed <answer>),
   "scores": {7 rewards + "total"}}

An interrupted evaluation resumes: rows already in the file (a torn last line dropped) are
not generated again, so every example is scored exactly once. `summarise` turns the file
into per-task means of every reward (and the count of unusable records), printed as a
table and saved as JSON for scripts.
"""
from __future__ import annotations

import json
import logging
import time
from collections import defaultdict

import numpy as np

log = logging.getLogger(__name__)
PREDICTIONS = "predictions.jsonl"


def read_predictions(path) -> list[dict]:
    from visd_jax.training.metrics import read_jsonl_appendable

    return read_jsonl_appendable(path)


def eval_sampler(model_fn, io, *, max_new_tokens: int, temperature: float, top_p: float, programs=None):
    """The training sampler for one answer per prompt (no top-k, the run's stop and pad ids)."""
    from visd_jax.training.programs import Programs
    from visd_jax.training.rollouts import ModelSampler

    return ModelSampler(model_fn, max_new_tokens, temperature, top_p, None, io.ids.stop, io.ids.pad, io.ids.media,
                        programs or Programs())


def answer(sampler, examples: list[dict], io, *, width: int, max_frames: int, key):
    """One completion per example (`rollouts.Rollouts`, scored) in a static batch of `width`:
    a short list is padded with copies of its first example, whose answers are dropped."""
    from visd_jax.pipeline import pad_batch
    from visd_jax.training.rollouts import rollout

    pb = pad_batch(examples + [examples[0]] * (width - len(examples)), batch_size=width, buckets=io.buckets,
                   max_frames=max_frames, pad_id=io.ids.pad)
    return rollout(sampler, pb, list(range(len(examples))), ctx=io.ctx, key=key, num_samples=1, progress=1.0)


def evaluate(model_fn, source, io, out_dir, *, batch_size: int, max_new_tokens: int, temperature: float = 0.0,
             top_p: float = 1.0, seed: int = 0, limit: int | None = None, programs=None, progress: bool = True,
             stop_after: int | None = None, write: bool = True) -> dict:
    """Appends predictions for every example of `source` not yet in `out_dir`/predictions.jsonl
    and returns the summary of the whole file. `model_fn()` gives the policy (an nnx model);
    `io` is the run's `setup.RunInputs`. `stop_after` chunks (tests: a kill mid-run).
    `write` False (every process of a multi-host run but the first): generate (the sampler is
    collective) and summarise in memory, write nothing."""
    import jax
    from etils import epath
    from tqdm import tqdm

    from visd_jax.pipeline import RecordError, make_example
    from visd_jax.pipeline.records import record_id
    from visd_jax.rewards.parse import parse

    out_dir = epath.Path(out_dir)  # local or gs:// alike, as the trainer's own logs
    path = out_dir / PREDICTIONS
    if write:
        out_dir.mkdir(parents=True, exist_ok=True)
    kept = read_predictions(path) if write else []
    done = {r["id"] for r in kept}
    n = len(source) if limit is None else min(limit, len(source))
    todo, bad = [], []
    for i in range(n):
        rec = source.record(i) if hasattr(source, "record") else source[i].get("record")
        rid = record_id(rec, i) if rec is not None else f"#{i}"
        if rid not in done:
            todo.append(i)
    sampler = eval_sampler(model_fn, io, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                           programs=programs)
    key = jax.random.key(seed)
    bar = tqdm(total=len(todo), desc="evaluate", unit="ex", disable=not progress)
    t0, generated, tokens = time.perf_counter(), 0, 0
    for c, start in enumerate(range(0, len(todo), batch_size)):
        if stop_after is not None and c >= stop_after:
            break
        chunk = todo[start:start + batch_size]
        examples = []
        for i in chunk:
            try:
                examples.append(make_example(source[i], io.example_cfg))
            except RecordError as e:
                bad.append({"id": e.record_id, "reason": e.reason})
        if examples:
            ro = answer(sampler, examples, io, width=batch_size, max_frames=io.example_cfg.frame_slots,
                        key=jax.random.fold_in(key, chunk[0]))
            rows = [{"id": ex["meta"]["id"], "task": ex["meta"]["task"], "question": ex["meta"]["question"],
                     "gold": ex["meta"]["answer"], "completion": ro.texts[r], "answer": parse(ro.texts[r]).answer,
                     "scores": {k: float(v[r, 0]) for k, v in ro.scores.items()}} for r, ex in enumerate(examples)]
            kept += rows
            generated += len(rows)
            tokens += int(ro.mask[:len(rows)].sum())
            if write:
                with path.open("a") as f:
                    f.writelines(json.dumps(row) + "\n" for row in rows)
        bar.update(len(chunk))
    bar.close()
    if bad and write:
        with (out_dir / "bad_records.jsonl").open("a") as f:
            f.writelines(json.dumps(b) + "\n" for b in bad)
    out = summarise(kept, bad=len(bad))
    dt = time.perf_counter() - t0  # this call's generation, compiles included
    out["throughput"] = {"generated": generated, "seconds": dt, "examples_per_s": generated / max(dt, 1e-9),
                         "completion_tokens_per_s": tokens / max(dt, 1e-9)}
    return out


def summarise(rows: list[dict], *, bad: int = 0) -> dict:
    """Per-task and overall means of every score; the number of examples each covers."""
    by_task = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r["scores"])
    out = {"examples": len(rows), "unusable": bad, "tasks": {}}
    names = sorted({k for r in rows for k in r["scores"]})
    for task, scores in sorted(by_task.items()):
        out["tasks"][task] = {"n": len(scores), **{k: float(np.mean([s.get(k, 0.0) for s in scores])) for k in names}}
    if rows:
        out["all"] = {"n": len(rows), **{k: float(np.mean([r["scores"].get(k, 0.0) for r in rows])) for k in names}}
    return out


def table(summary: dict) -> str:
    """Markdown: per task, the mean of each reward."""
    parts = [(t, v) for t, v in summary["tasks"].items()] + ([("all", summary["all"])] if "all" in summary else [])
    if not parts:
        return "(no predictions)"
    names = [k for k in parts[0][1] if k != "n"]
    names = [k for k in names if k != "total"] + (["total"] if "total" in names else [])
    lines = ["| task | n | " + " | ".join(names) + " |", "| --- | ---: |" + " ---: |" * len(names)]
    lines += [f"| {t} | {v['n']} | " + " | ".join(f"{v[k]:.3f}" for k in names) + " |" for t, v in parts]
    return "\n".join(lines)
