"""Compiles and step time on videos of every shape (`data.varied`: 12 video grids, 4-16
frames in three aspect ratios, plus images), the trainer's `gspo` mode on the tiny model.

    python bench/varied_shapes.py [--steps 8] [--mode gspo]

Counts every XLA backend compile of the run (jax.monitoring), whatever program asked for
it, so the number compares code that has no compile counter of its own: run it once on an
older checkout (copy this file and data/varied.py there) and once here, on the same
machine. Prints one markdown row: compiles, compile seconds, total and per-RL-step seconds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, ".")
import tests.conftest  # noqa: E402,F401  (8 CPU devices, absl flags parsed)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--mode", default="gspo")
    ap.add_argument("--label", default="this checkout")
    args = ap.parse_args()
    import jax

    import data.varied
    from tests.training.conftest import tiny_config
    from visd_jax.training.trainer import Trainer

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, **kw: compiles.append(secs) if event == "/jax/core/compile/backend_compile_duration"
        else None)
    tmp = Path(tempfile.mkdtemp())
    ann, root = data.varied.generate(tmp / "varied")
    cfg = tiny_config(tmp, mode=args.mode, sft_steps=1, rl_steps=args.steps, **{
        "data.source": "stgr", "data.annotations": str(ann), "data.video_root": str(root),
        "data.min_frames": 4, "data.max_frames": 16, "data.fps": 2.0,
        "data.max_pixels": data.varied.VARIED_MAX_PIXELS, "rl.max_new_tokens": 6,
        "checkpoint.every": 1000})
    t0 = time.perf_counter()
    rows = Trainer(cfg).run()
    total = time.perf_counter() - t0
    rl = [r["time/step"] for r in rows if r["phase"] == "rl"]
    own = {k: int(v) for k, v in rows[-1].items() if k.startswith("compiles/")}
    print("| code | RL steps | XLA compiles | compile s | run s | RL step s (median) | program compiles |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.label} | {len(rl)} | {len(compiles)} | {sum(compiles):.1f} | {total:.1f} | "
          f"{statistics.median(rl):.2f} | {own or 'not counted'} |")


if __name__ == "__main__":
    main()
