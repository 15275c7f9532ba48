"""Command-line entry for every experiment: `python -m experiments.NAME [--config=...:VARIANT]
[--config.FIELD=VALUE ...]` (big_vision's config_flags pattern).

Bad values fail before any device work: ml_collections rejects a wrong type, `validate`
a wrong value, each naming the field.
"""
from __future__ import annotations

import json
import logging
import sys


def _unknown_fields(experiment_file: str, argv) -> list[str]:
    """Overrides naming no field of the chosen variant's config, before absl's parser
    (whose answer is a long traceback) sees them."""
    import importlib.util

    from visd_jax.training.config import unknown_overrides

    variant = next((a.split(":", 1)[1] for a in argv if a.startswith("--config=") and ":" in a), None)
    spec = importlib.util.spec_from_file_location("_experiment", experiment_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return unknown_overrides(module.get_config(variant), argv)


def main(experiment_file: str, argv=None, job=None, check=None) -> None:
    """`job(cfg)` runs the experiment (default: the trainer); `check(cfg)` validates what
    `validate` does not know (an experiment's own config section), raising ValueError."""
    from absl import app
    from ml_collections import config_flags

    unknown = _unknown_fields(experiment_file, sys.argv if argv is None else argv)
    if unknown:
        print("error: " + "; ".join(unknown), file=sys.stderr)
        sys.exit(2)
    config = config_flags.DEFINE_config_file(
        "config", f"{experiment_file}:local", "experiment config file and variant (file.py:VARIANT)",
        lock_config=True)

    def run(_):
        from visd_jax.training.config import check_paths, validate

        cfg = config.value
        try:  # before JAX or the trainer is imported: a bad value costs a second, not fifteen
            validate(cfg)
            check_paths(cfg)
            if check is not None:
                check(cfg)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        if not cfg.workdir:
            print("error: config.workdir is empty; give --config.workdir=PATH (gs://... on TPU)", file=sys.stderr)
            sys.exit(2)
        logging.getLogger("absl").setLevel(logging.WARNING)
        from visd_jax.pipeline import NoUsableRecords
        from visd_jax.training.trainer import Trainer

        try:
            job(cfg) if job is not None else _train(Trainer, cfg)
        except (NoUsableRecords, FileNotFoundError) as e:  # the data or the checkpoint, not a bug
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)

    app.run(run, argv=argv)


def _train(Trainer, cfg) -> None:
    """Runs the job and prints its start line and summary."""
    trainer = Trainer(cfg)
    print(f"visd-jax: mode={cfg.mode} variant={cfg.get('variant', '?')} devices={trainer.mesh.devices.size} "
          f"steps={trainer.total} (sft {trainer.sft_steps}, rl {trainer.rl_steps}) "
          f"workdir={trainer.workdir}" + (f" resuming at step {trainer.start}" if trainer.start else ""),
          flush=True)
    rows = trainer.run()
    rl = [r for r in rows if "reward/total" in r]
    summary = {"steps": len(rows), "workdir": str(trainer.workdir)}
    if rl:
        k = max(1, len(rl) // 10)
        summary["reward_first_10pct"] = sum(r["reward/total"] for r in rl[:k]) / k
        summary["reward_last_10pct"] = sum(r["reward/total"] for r in rl[-k:]) / k
    print("done: " + json.dumps(summary), flush=True)
    print(f"metrics: {trainer.workdir / 'metrics.jsonl'}  tensorboard: {trainer.workdir / 'tensorboard'}  "
          f"reward curve: {trainer.workdir / 'rewards.png'}", flush=True)
