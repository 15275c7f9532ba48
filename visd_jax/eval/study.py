"""The convergence study's numbers and figure from its runs' metrics (experiments/study.py).

A run is a list of metrics rows (metrics.jsonl). Its held-out curve is `eval/total` at the
steps it was evaluated, starting from the shared SFT policy's score at step 0; its training
curve is `reward/total` per RL step. Per method (several seeds):

  final      mean +- std (ddof 1) over seeds of the last held-out score
  auc        mean +- std of the area under the held-out curve divided by the steps (the
             trapezoid rule: the run's average held-out score over training)
  reach      the first evaluated step at which the seed-mean curve is >= GSPO's final
             seed-mean score (None: never within the budget); `reach_ratio` = reach / GSPO's
             reach. Evaluations every K steps make this a multiple of K.

`figure` draws training reward and held-out score per step, seed mean with a band of
+- one std (none for one seed), one colour per method.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

HELDOUT, TRAIN = "eval/total", "reward/total"


def curve(rows: Sequence[Mapping], key: str, *, base: float | None = None) -> list[tuple[int, float]]:
    """(step, value) of every row holding `key`, step 0 = `base` when given."""
    pts = [(int(r["step"]), float(r[key])) for r in rows if isinstance(r.get(key), (int, float))]
    pts = sorted(dict(pts).items())  # a resumed run may log a step twice: the last one counts
    return ([(0, float(base))] if base is not None else []) + pts


def _stack(curves: Sequence[list[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Steps common to every seed and the values [seeds, steps] there."""
    if not curves or not all(curves):
        raise ValueError("study: a run without points (not evaluated, or not started)")
    steps = sorted(set.intersection(*(set(s for s, _ in c) for c in curves)))
    if not steps:
        raise ValueError("study: the seeds of a method share no evaluated step")
    vals = np.asarray([[dict(c)[s] for s in steps] for c in curves], np.float64)
    return np.asarray(steps), vals


def auc(steps: np.ndarray, values: np.ndarray) -> float:
    """Trapezoid area under (steps, values) divided by the step span: the average level."""
    if len(steps) < 2:
        return float(values[-1])
    y = np.asarray(values, np.float64)
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(steps)) / (steps[-1] - steps[0]))


def reach(steps: np.ndarray, mean: np.ndarray, target: float) -> int | None:
    hit = np.nonzero(mean >= target - 1e-12)[0]
    return int(steps[hit[0]]) if hit.size else None


def _mean_std(x) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0


def summarise(heldout: Mapping[str, Sequence[list]], *, baseline: str = "gspo") -> dict[str, dict]:
    """{method: {seeds, final, final_std, auc, auc_std, reach, reach_ratio, steps, mean}}."""
    out = {}
    for method, curves in heldout.items():
        steps, vals = _stack(curves)
        areas = [auc(steps, v) for v in vals]
        out[method] = {"seeds": len(curves), "steps": steps.tolist(), "mean": vals.mean(0).tolist()}
        out[method]["final"], out[method]["final_std"] = _mean_std(vals[:, -1])
        out[method]["auc"], out[method]["auc_std"] = _mean_std(areas)
    if baseline in out:
        target = out[baseline]["final"]
        base_reach = reach(np.asarray(out[baseline]["steps"]), np.asarray(out[baseline]["mean"]), target)
        for m in out.values():
            m["target"] = target
            m["reach"] = reach(np.asarray(m["steps"]), np.asarray(m["mean"]), target)
            m["reach_ratio"] = (m["reach"] / base_reach if m["reach"] is not None and base_reach else None)
    return out


def table(summary: Mapping[str, Mapping], *, baseline: str = "gspo") -> str:
    """Markdown: final held-out score, AUC, steps to GSPO's final score and the ratio."""
    lines = [f"| method | seeds | final held-out (mean +- std) | AUC (mean +- std) | steps to {baseline}'s final "
             "| ratio |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, m in summary.items():
        r = "never" if m.get("reach") is None else str(m["reach"])
        q = "-" if m.get("reach_ratio") is None else f"{m['reach_ratio']:.2f}"
        lines.append(f"| {name} | {m['seeds']} | {m['final']:.3f} +- {m['final_std']:.3f} | "
                     f"{m['auc']:.3f} +- {m['auc_std']:.3f} | {r} | {q} |")
    return "\n".join(lines)


def _band(ax, curves, label, colour, smooth: int = 1):
    steps, vals = _stack(curves)
    if smooth > 1:  # a trailing moving average per seed: RL rewards are noisy step to step
        k = np.ones(smooth)
        vals = np.stack([np.convolve(v, k, "full")[: len(v)] / np.minimum(np.arange(1, len(v) + 1), smooth)
                         for v in vals])
    mean = vals.mean(0)
    ax.plot(steps, mean, color=colour, linewidth=2, label=f"{label} (n={len(curves)})")
    if len(curves) > 1:
        sd = vals.std(0, ddof=1)
        ax.fill_between(steps, mean - sd, mean + sd, color=colour, alpha=0.18, linewidth=0)


def figure(train: Mapping[str, Sequence[list]], heldout: Mapping[str, Sequence[list]], path, *,
           title: str = "", ceiling: float | None = None, smooth: int = 5) -> str:
    """Two panels (training reward, held-out score) per step; returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from etils import epath

    colours = dict(zip(list(heldout) + [m for m in train if m not in heldout],
                       plt.get_cmap("tab10").colors))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for ax, curves, name in ((axes[0], train, f"training reward ({TRAIN}, moving average {smooth})"),
                             (axes[1], heldout, f"held-out score ({HELDOUT})")):
        for method, cs in curves.items():
            _band(ax, cs, method, colours[method], smooth=smooth if curves is train else 1)
        if ceiling is not None and curves is heldout and math.isfinite(ceiling):
            ax.axhline(ceiling, color="grey", linestyle="--", linewidth=1, label=f"ceiling {ceiling:.2f}")
        ax.set_xlabel("RL step")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = epath.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return str(out)
