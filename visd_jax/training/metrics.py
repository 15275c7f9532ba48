"""Where a run's numbers go: JSON lines, TensorBoard events, a progress line, a PNG.

Only process 0 writes (every process computes the same replicated metrics). JSON lines are
the source of truth (`metrics.jsonl`, one object per step with a `step` key); TensorBoard
and the PNG are views of the same values.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import numbers
import os
import statistics
import sys
import time
from collections.abc import Mapping, Sequence

from etils import epath


log = logging.getLogger(__name__)


def _plain(v):
    """JSON-safe scalar: numpy/jax 0-d arrays become floats; NaN/inf become strings."""
    if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
        v = v.item()
    if isinstance(v, bool) or isinstance(v, (int, str)) or v is None:
        return v
    if isinstance(v, numbers.Real):
        v = float(v)
        return v if math.isfinite(v) else repr(v)  # 'nan', 'inf': strict JSON has neither
    raise TypeError(f"metric value of type {type(v).__name__} is not a scalar: {v!r}")


_NONFINITE = ("nan", "inf", "-inf")


def repair_jsonl(path, *, upto_step: int | None = None) -> int:
    """Makes a run's JSON-lines file fit to append to: drops a torn last line (a kill
    mid-write) and, on a resume from `upto_step`, the rows of later steps (the resumed run
    writes them again). Returns the number of lines dropped; logs what and why."""
    path = epath.Path(path)
    if not path.exists():
        return 0
    text = path.read_text()
    lines = text.split("\n")
    torn = lines.pop() if lines else ""  # text after the last newline: a half-written row
    keep, dropped = [], int(bool(torn.strip()))
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if upto_step is not None and isinstance(row, dict) and row.get("step", 0) > upto_step:
            dropped += 1
            continue
        keep.append(line)
    if dropped:
        log.warning("%s: dropped %d line(s): a torn last row or rows past the resumed step %s",
                    path, dropped, upto_step)
        tmp = path.parent / (path.name + ".tmp")  # a kill while rewriting leaves the old file whole
        tmp.write_text("".join(x + "\n" for x in keep))
        tmp.replace(path)
    return dropped


class MetricsWriter:
    """Appends per-step metrics to `workdir/metrics.jsonl` and TensorBoard events.

    `resume_step`: the step a resumed run starts from; rows after it are dropped, as is a
    torn last line, before anything is appended."""

    def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True, tensorboard: bool = True,
                 resume_step: int | None = None, wandb: str = "", wandb_project: str = "visd-jax",
                 run_config: Mapping | None = None):
        self.enabled = enabled
        self.path = epath.Path(workdir) / "metrics.jsonl"
        self._tb = None
        self._wandb = None
        if enabled and wandb:
            self._wandb = _wandb_run(workdir, wandb, wandb_project, run_config)
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for name in ("metrics.jsonl", "samples.jsonl", "bad_records.jsonl"):
                repair_jsonl(epath.Path(workdir) / name, upto_step=resume_step)
            self._f = self.path.open("a")
            if tensorboard:
                # tensorboardX (MaxText's writer; pure Python, no TensorFlow): local paths, and
                # gs:// through google-cloud-storage (the tpu extra)
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(str(epath.Path(workdir) / "tensorboard"), flush_secs=30)

    def write(self, step: int, metrics: Mapping[str, object]) -> None:
        if not self.enabled:
            return
        plain = {k: _plain(v) for k, v in metrics.items()}
        self._f.write(json.dumps({"step": int(step), **plain}, sort_keys=True) + "\n")
        self._f.flush()
        if self._tb is not None:
            # 'nan'/'inf' are JSON's spelling; TensorBoard gets them back as floats
            for k, v in plain.items():
                if isinstance(v, numbers.Real) or v in _NONFINITE:
                    self._tb.add_scalar(k, float(v), global_step=int(step))
        if self._wandb is not None:
            self._wandb.log({k: float(v) for k, v in plain.items() if isinstance(v, numbers.Real) or v in _NONFINITE},
                            step=int(step))

    def close(self) -> None:
        if self.enabled:
            self._f.close()
            if self._tb is not None:
                self._tb.close()
            if self._wandb is not None:
                import wandb

                self._wandb.finish()
                # finish() only tells W&B's service process the run is over; the service
                # writes the run's record log (the offline file `wandb sync` uploads) when it
                # closes the stream, after finish() has returned. teardown() waits for that,
                # so the files are whole once close() returns, not at some later exit hook
                # (CI read a header-only file once).
                wandb.teardown()


def _wandb_run(workdir, mode: str, project: str, run_config: Mapping | None):
    """A Weights & Biases run for `workdir` (`mode` offline or online). Its id is derived from
    the work directory, so a resumed training run continues the same W&B run; offline runs
    need no network (`wandb sync DIR/wandb/offline-run-*` uploads them later)."""
    import hashlib

    try:
        import wandb
    except ImportError as e:
        raise ImportError("config.log.wandb is set but wandb is not installed: pip install wandb") from e
    run_id = hashlib.sha1(str(epath.Path(workdir).resolve() if "://" not in str(workdir) else workdir).encode()
                          ).hexdigest()[:12]
    local = str(workdir) if "://" not in str(workdir) else None
    return wandb.init(project=project, id=run_id, resume="allow", mode=mode, dir=local,
                      config=dict(run_config or {}), settings=wandb.Settings(silent=True))


class BadRecordLog:
    """`bad_records.jsonl`: every record the data iterators skipped, with the step, its id
    and the reason, appended as they are reported (MetricsWriter repairs it on resume)."""

    def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True):
        self.path = epath.Path(workdir) / "bad_records.jsonl"
        self.enabled = enabled
        self._seen: dict[int, int] = {}

    def update(self, step: int, iterators) -> float:
        """Writes the newly skipped records; returns the number skipped so far."""
        total, rows = 0, []
        for it in iterators:
            if it is None:
                continue
            rep = it.report()
            total += rep["bad"]
            new = rep["bad_records"][self._seen.get(id(it), 0):]
            self._seen[id(it)] = len(rep["bad_records"])
            rows += [{"step": int(step), "id": rid, "reason": why} for rid, why in new]
        if rows and self.enabled:
            with self.path.open("a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in rows))
        return float(total)


def read_jsonl_appendable(path) -> list[dict]:
    """The rows of a JSON-lines file a job appends to and resumes (evaluation predictions,
    the selector's data): a torn last line (a kill mid-write) is dropped from the file first,
    so appending goes on from whole rows. A missing file has no rows."""
    repair_jsonl(path)
    path = epath.Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    """All rows of `metrics.jsonl`; a resumed run's re-written steps replace older rows."""
    path = epath.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    by_step: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            by_step[row["step"]] = row
    return [by_step[s] for s in sorted(by_step)]


class Progress:
    """One self-overwriting status line: step, reward, hard fraction, tokens/s, ETA.

    The ETA is per phase: an SFT step and an RL step differ tenfold, so each phase's
    remaining steps are priced at that phase's own recent step time (median of the last
    20, the first step of a phase, which compiles, left out). A phase not yet started has
    no price: the ETA then covers the known phases only and ends with "+".
    """

    def __init__(self, total_steps: int, *, phases: Mapping[str, int] | None = None, stream=None,
                 enabled: bool = True):
        self.total = max(1, int(total_steps))
        # ordered {phase: number of steps}; one anonymous phase when not given
        self.phases = {k: int(v) for k, v in (phases or {"": self.total}).items() if int(v) > 0}
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self._last: tuple[float, str] | None = None
        self._dt: dict[str, list[float]] = {}

    def _eta(self, step: int) -> tuple[float | None, bool]:
        """(seconds for the steps after `step`, whether some phase could not be priced)."""
        eta, unknown, begin = 0.0, False, 0
        for name, n in self.phases.items():
            left = (begin + n) - max(step, begin)
            begin += n
            if left <= 0:
                continue
            dts = self._dt.get(name)
            if not dts:
                unknown = True
                continue
            eta += left * statistics.median(dts[-20:])
        return (None if unknown and eta == 0 else eta), unknown

    def update(self, step: int, *, reward: float | None = None, hard_frac: float | None = None,
               tokens_per_s: float | None = None, extra: str = "", phase: str | None = None) -> str:
        now = time.monotonic()
        phase = (extra if phase is None else phase) if len(self.phases) > 1 else next(iter(self.phases), "")
        if self._last is not None and self._last[1] == phase:
            self._dt.setdefault(phase, []).append(now - self._last[0])
        self._last = (now, phase)
        eta, unknown = self._eta(step)
        width = 24
        filled = int(width * min(step, self.total) / self.total)
        parts = [f"[{'#' * filled}{'.' * (width - filled)}] {step}/{self.total}"]
        if reward is not None:
            parts.append(f"reward {reward:.3f}")
        if hard_frac is not None:
            parts.append(f"hard {hard_frac:.0%}")
        if tokens_per_s is not None:
            parts.append(f"{tokens_per_s:,.0f} tok/s")
        parts.append(f"ETA {_hms(eta)}{'+' if unknown else ''}" if eta is not None else "ETA --")
        if extra:
            parts.append(extra)
        line = "  ".join(parts)
        if self.enabled:
            end = "\n" if step >= self.total or not self.stream.isatty() else "\r"
            self.stream.write(line + end)
            self.stream.flush()
        return line


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


def plot_curves(rows: Sequence[Mapping[str, object]], keys: Sequence[str], path: str | os.PathLike,
                *, title: str = "reward", smooth: int = 5) -> str:
    """PNG of the given metric keys against step, raw and with a trailing moving average."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on TPU workers or CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for key in keys:
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        if not pts:
            continue
        xs, ys = zip(*pts)
        line, = ax.plot(xs, ys, alpha=0.3, linewidth=1)
        k = max(1, min(smooth, len(ys)))
        avg = [sum(ys[max(0, i - k + 1): i + 1]) / len(ys[max(0, i - k + 1): i + 1]) for i in range(len(ys))]
        ax.plot(xs, avg, color=line.get_color(), linewidth=2, label=key)
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out = epath.Path(path)
    with out.open("wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return str(out)


@contextlib.contextmanager
def timer(out: dict, key: str):
    """Adds the wall-clock seconds of the block to out[key] (also when it raises)."""
    t = time.perf_counter()
    try:
        yield
    finally:
        out[key] = out.get(key, 0.0) + time.perf_counter() - t
