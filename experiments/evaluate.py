"""Evaluate a trained policy on held-out data: predictions, per-task reward means, a summary.

    python -m experiments.evaluate                                   # local: the main job's run
    python -m experiments.evaluate --config.eval.policy=W [--config.eval.step=N]
    python -m experiments.evaluate --config=experiments/evaluate.py:tpu --config.model.path=CKPT \\
        --config.eval.annotations=eval.json --config.workdir=gs://BUCKET/eval

The policy: `eval.policy`, a training run's work directory (its newest checkpoint, or
`eval.step`), or `model.path`, a Hugging Face checkpoint. Writes `predictions.jsonl` (one
row per example: completion, parsed answer, every reward), `summary.json` and prints the
per-task table; an interrupted evaluation resumes where it stopped. The V-STAR table of a
prediction file with V-STAR chains: `python -m visd_jax.eval.vstar --predictions F.jsonl`.
Variants: `local` (the synthetic held-out split, CPU) and `tpu` (a v5e_8 mesh).
"""
from __future__ import annotations

from experiments import visd_v5e

VARIANTS = ("local", "tpu")


def get_config(arg: str | None = None):
    variant = arg or "local"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} for experiments/evaluate.py; choose from {VARIANTS}")
    c = visd_v5e.get_config("local" if variant == "local" else "v5e_8")
    c.variant, c.mode = variant, "sft"  # no training: the mode only satisfies the schema
    c.eval.update(policy="workdir/visd_v5e_local" if variant == "local" else "", step=0)
    if variant == "local":
        c.workdir = "workdir/evaluate_local"
        c.eval.update(examples=20, batch_size=5)
    else:
        c.eval.update(batch_size=32)
    return c


def check(cfg) -> None:
    if not cfg.eval.policy and not cfg.model.path:
        raise ValueError("config.eval.policy: give a training run's work directory, or --config.model.path")
    if not isinstance(cfg.eval.step, int) or cfg.eval.step < 0:
        raise ValueError(f"config.eval.step={cfg.eval.step!r}: an int >= 0 (0: the newest checkpoint)")


def run(cfg) -> dict:
    import json

    from etils import epath

    from visd_jax.eval.run import evaluate, table
    from visd_jax.training.policy import load_policy
    from visd_jax.training.setup import build_eval_data, run_inputs

    e = cfg.eval
    p = (load_policy(workdir=e.policy, step=e.step or None) if e.policy
         else load_policy(model_path=cfg.model.path, dtype=cfg.model.dtype))
    # the inputs the policy was trained on (frames, pixels, recipe); the data to read from cfg
    io = run_inputs(p.config or cfg, p.model.config, p.tokenizer, p.tokenizer_dir, blocks_per_batch=e.batch_size)
    source = build_eval_data(cfg, cfg.workdir)
    print(f"evaluate: {p.source} on {len(source)} examples ({cfg.data.source}, split {e.split}) -> {cfg.workdir}",
          flush=True)
    summary = evaluate(lambda: p.model, source, io, cfg.workdir, batch_size=e.batch_size,
                       max_new_tokens=e.max_new_tokens or cfg.rl.max_new_tokens, temperature=float(e.temperature),
                       top_p=float(e.top_p), seed=cfg.seed, progress=cfg.log.progress)
    summary["policy"] = p.source
    (epath.Path(cfg.workdir) / "summary.json").write_text(json.dumps(summary, indent=1))
    print(table(summary), flush=True)
    print(f"predictions: {epath.Path(cfg.workdir) / 'predictions.jsonl'}", flush=True)
    return summary


if __name__ == "__main__":  # grain spawns worker processes: keep start-up under this guard
    from visd_jax.training import cli

    cli.main(__file__, job=run, check=check)
