"""Per-step time breakdown of a training run, from its metrics.jsonl.

    python -m experiments.visd_v5e                     # writes workdir/visd_v5e_local/
    python bench/step_breakdown.py --workdir workdir/visd_v5e_local

Prints a markdown table: mean seconds per phase of the RL steps (rollout, coach = hard-sample
prompted rollouts, judge, teacher = scorer forward passes, update = minibatch updates + EMA),
with the first `--skip` steps of each phase left out because they include compilation.
"""
from __future__ import annotations

import argparse
import statistics
import sys

sys.path.insert(0, ".")
from visd_jax.training.metrics import read_metrics  # noqa: E402

PARTS = ("time/rollout", "time/coach", "time/judge", "time/teacher", "time/update")


def table(rows, skip: int) -> str:
    rl = [r for r in rows if r.get("phase") == "rl"][skip:]
    sft = [r for r in rows if r.get("phase") == "sft"][skip:]
    out = ["| phase | mean s/step | share of RL step |", "|---|---|---|"]
    if rl:
        total = statistics.mean(r["time/step"] for r in rl)
        for k in PARTS:
            vals = [r[k] for r in rl if k in r]
            if vals:
                m = statistics.mean(vals)
                out.append(f"| {k[5:]} | {m:.3f} | {m / total:.0%} |")
        out.append(f"| **RL step (all)** | {total:.3f} | 100% |")
        out.append(f"| rollout tokens/s | {statistics.mean(r['tokens_per_s'] for r in rl):,.0f} | |")
    if sft:
        out.append(f"| SFT step | {statistics.mean(r['time/step'] for r in sft):.3f} | |")
    out.append(f"\n{len(rl)} RL and {len(sft)} SFT steps averaged (first {skip} of each skipped: compilation).")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="workdir/visd_v5e_local")
    p.add_argument("--skip", type=int, default=3)
    a = p.parse_args(argv)
    rows = read_metrics(a.workdir)
    if not rows:
        sys.exit(f"no metrics.jsonl in {a.workdir}: run the experiment first")
    print(table(rows, a.skip))


if __name__ == "__main__":
    main()
