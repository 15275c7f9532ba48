"""Command-line entry for every experiment: `python -m experiments.NAME [--config=...:VARIANT]
[--config.FIELD=VALUE ...]` (big_vision's config_flags pattern).

Bad values fail before any device work: ml_collections rejects a wrong type, `validate`
a wrong value, each naming the field.
"""
from __future__ import annotations

import json
import logging
import sys


def main(experiment_file: str, argv=None) -> None:
    from absl import app
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file(
        "config", f"{experiment_file}:local", "experiment config file and variant (file.py:VARIANT)",
        lock_config=True)

    def run(_):
        from visd_jax.training.config import validate
        from visd_jax.training.trainer import Trainer

        cfg = config.value
        try:
            validate(cfg)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        if not cfg.workdir:
            print("error: config.workdir is empty; give --config.workdir=PATH (gs://... on TPU)", file=sys.stderr)
            sys.exit(2)
        logging.getLogger("absl").setLevel(logging.WARNING)
        from visd_jax.pipeline import NoUsableRecords

        try:
            _train(Trainer, cfg)
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
