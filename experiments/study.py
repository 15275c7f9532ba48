"""The convergence study: GSPO vs VisionCoach vs VISD vs both, with seeds, held-out evaluation.

    python -m experiments.study                                   # local: CPU, ~1-2 hours
    python -m experiments.study --config.study.redraw=True        # table + figure from the runs
    python -m experiments.study --config=experiments/study.py:smoke   # 2 steps a run (CI)

One SFT cold start (`<workdir>/sft`, evaluated on the held-out split when it ends: every
curve's step 0), then for each method and seed an RL run from it (`model.init_from`) with
the same number of steps and the same data order (`data.order_seed`), evaluated on the
held-out split every `study.eval_every` steps (`<workdir>/runs/<method>_s<seed>`). The
methods are the project's experiment configs (gspo, visioncoach with the release's
reference KL, visd, visd_coach = the main job) on `data.synthetic_difficulty` 1. Ablations
(one seed) vary one setting of a method. Runs are resumable one by one: a finished run is
read, not rerun; an interrupted one continues from its checkpoint.

Writes `<workdir>/study.json` (every number), `<workdir>/study.md` (the tables) and the
figure `study.figure` (training reward and held-out score per step, seed mean +- std).
The held-out ceiling is the score of the ground-truth traces the SFT stage learns from.
"""
from __future__ import annotations

import copy
import json
import os
import pathlib

from experiments import visd_v5e, visioncoach

VARIANTS = ("local", "smoke")
METHODS = ("gspo", "visioncoach", "visd", "visd_coach")
METHOD_SETTINGS = {"visioncoach": {"rl.ref_kl_beta": visioncoach.REF_KL_BETA}}
# name -> (method, the one setting it changes); "{selector}" is study.selector
ABLATIONS = {
    "visd_lambda0": ("visd", {"visd.lambda_steps": 0}),  # no teacher signal: lambda = 0 throughout
    "visd_sampled": ("visd", {"visd.signal_mode": "sampled"}),  # the sampled token's log-ratio, not top-K
    "visioncoach_oracle": ("visioncoach", {"coach.selector": "oracle"}),
    "visioncoach_learned": ("visioncoach", {"coach.selector": "learned:{selector}"}),
    "gspo_mb1": ("gspo", {"rl.minibatches": 1}),  # on-policy, as the releases
    "gspo_mb4": ("gspo", {"rl.minibatches": 4}),  # the paper's off-policy GSPO
}


def get_config(arg: str | None = None):
    variant = arg or "local"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} for experiments/study.py; choose from {VARIANTS}")
    c = visd_v5e.get_config("local")
    c.variant = variant
    c.mode = "sft"  # the stage the study starts with; each run sets its own
    # selector: a python -m experiments.vp_selector run for the learned-selector ablation
    # ("" skips it); redraw: read the runs and draw, train nothing
    c.study = dict(methods=",".join(METHODS), seeds=3, rl_steps=30, eval_every=5, ablations=True, selector="",
                   figure="docs/study.png", redraw=False)
    # harder scenes: the SFT policy starts well below the ceiling and plain GSPO has room
    c.data.update(synthetic_difficulty=1, synthetic_examples=40, order_seed=0)
    c.eval.update(examples=20, batch_size=5)
    c.checkpoint.update(every=10, keep=1)
    if variant == "local":
        c.workdir = "workdir/study_local"
        return c
    c.workdir = "workdir/study_smoke"
    c.model.preset = "tiny"
    c.data.update(synthetic_examples=10)
    c.eval.update(examples=5, batch_size=5, max_new_tokens=12)
    c.sft.update(steps=2, batch_size=2)
    c.rl.update(prompts_per_step=2, num_generations=2, minibatches=2, max_new_tokens=12)
    c.visd.lambda_steps = 10
    c.study.update(seeds=1, rl_steps=2, eval_every=2, ablations=False, figure="")
    c.checkpoint.update(every=2, async_save=False)
    c.log.progress = False
    return c


def check(cfg) -> None:
    s = cfg.study
    methods = [m for m in s.methods.split(",") if m]
    if not methods or any(m not in METHODS for m in methods):
        raise ValueError(f"config.study.methods={s.methods!r}: a comma-separated subset of {METHODS}")
    for key in ("seeds", "rl_steps", "eval_every"):
        if not isinstance(s[key], int) or isinstance(s[key], bool) or s[key] < 1:
            raise ValueError(f"config.study.{key}={s[key]!r}: a positive int")


def plan(cfg) -> list[tuple[str, str, int, dict]]:
    """(run name, method, seed, settings) of every run: methods x seeds, then the ablations
    (seed 0) whose setting differs from the method's own run."""
    s = cfg.study
    runs = [(f"{m}_s{k}", m, k, {}) for m in s.methods.split(",") if m for k in range(s.seeds)]
    if s.ablations:
        for name, (m, change) in ABLATIONS.items():
            if "{selector}" in str(change.get("coach.selector", "")) and not s.selector:
                continue
            change = {k: v.format(selector=s.selector) if isinstance(v, str) else v for k, v in change.items()}
            runs.append((name, m, 0, change))
    return runs


def _set(c, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = c
    for p in parents:
        node = node[p]
    node[leaf] = value


def sft_config(cfg):
    c = copy.deepcopy(cfg)
    c.workdir = f"{cfg.workdir}/sft"
    c.mode = "sft"
    c.eval.every = c.sft.steps  # one evaluation, after the last step: every curve's step 0
    return c


def run_config(cfg, method: str, seed: int, change: dict, name: str):
    c = copy.deepcopy(cfg)
    c.mode, c.seed, c.workdir = method, seed, f"{cfg.workdir}/runs/{name}"
    c.model.init_from = f"{cfg.workdir}/sft"
    c.sft.steps = 0
    c.rl.steps = cfg.study.rl_steps
    c.eval.every = cfg.study.eval_every
    for k, v in {**METHOD_SETTINGS.get(method, {}), **change}.items():
        _set(c, k, v)
    return c


def _held(lock: pathlib.Path) -> bool:
    """Whether a live process on this machine holds `lock` (a stale one, from a kill, is not)."""
    try:
        os.kill(int(lock.read_text().strip()), 0)
        return True
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # alive, another user's
        return True


def _train(c, total: int) -> None:
    """Trains (or finishes) run `c`; a finished run is left as it is, and a run another study
    process is training now (its lock file names a live pid) is skipped."""
    from visd_jax.training.metrics import read_metrics
    from visd_jax.training.trainer import Trainer

    rows = read_metrics(c.workdir)
    if rows and rows[-1]["step"] >= total:
        return
    lock = pathlib.Path(c.workdir) / ".study-lock"
    if _held(lock):
        print(f"study: {c.workdir} is being trained by process {lock.read_text().strip()}; skipped", flush=True)
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(str(os.getpid()))
    try:
        Trainer(c).run()
    finally:
        lock.unlink(missing_ok=True)


def wall(rows) -> float:
    """A run's seconds from its metrics (steps and evaluations; start-up and compiles of the
    first step included in it), so resumed and concurrent runs are timed alike."""
    return float(sum(r.get("time/step", 0.0) + r.get("time/eval", 0.0) for r in rows))


def ceiling(cfg) -> float:
    """The held-out score of the ground-truth traces (what SFT imitates): the reachable top."""
    import numpy as np

    from visd_jax import rewards as rw
    from visd_jax.pipeline import RecordError, make_example
    from visd_jax.training.policy import load_policy
    from visd_jax.training.setup import build_eval_data, run_inputs
    from visd_jax.training.traces import trace

    source = build_eval_data(cfg, cfg.workdir)
    p = load_policy(workdir=f"{cfg.workdir}/sft")  # its tokenizer and frames: the inputs evaluated
    io = run_inputs(p.config, p.model.config, p.tokenizer, p.tokenizer_dir, blocks_per_batch=1)
    totals = []
    for i in range(len(source)):
        try:
            meta = make_example(source[i], io.example_cfg)["meta"]
        except RecordError:
            continue
        totals.append(float(rw.score_group([trace(meta, max_claims=cfg.sft.max_claims)], meta, progress=1.0)["total"][0]))
    return float(np.mean(totals))


def collect(cfg) -> dict:
    """Curves, summaries and tables of every run in the plan that has metrics."""
    from visd_jax.eval import study
    from visd_jax.training.metrics import read_metrics

    base_rows = read_metrics(f"{cfg.workdir}/sft")
    base = [r[study.HELDOUT] for r in base_rows if study.HELDOUT in r]
    if not base:
        raise FileNotFoundError(f"{cfg.workdir}/sft has no held-out score: run the study first")
    heldout, train, single, walls = {}, {}, {}, {"sft": wall(base_rows)}
    for name, method, seed, change in plan(cfg):
        rows = read_metrics(f"{cfg.workdir}/runs/{name}")
        if not rows:
            continue
        walls[name] = wall(rows)
        h = study.curve(rows, study.HELDOUT, base=base[-1])
        tr = study.curve(rows, study.TRAIN)
        if change:
            single[name] = [h]
            train.setdefault(name, [])  # ablations: table only
        else:
            heldout.setdefault(method, []).append(h)
            train.setdefault(method, []).append(tr)
            if seed == 0:
                single[f"{method} (seed 0)"] = [h]
    train = {k: v for k, v in train.items() if v}
    return {"base": base[-1], "heldout": heldout, "train": train, "single": single, "walls": walls}


def report(cfg) -> dict:
    from etils import epath

    from visd_jax.eval import study

    got = collect(cfg)
    path = epath.Path(cfg.workdir)
    ceil_file = path / "ceiling.json"
    if not ceil_file.exists():
        ceil_file.write_text(json.dumps({"ceiling": ceiling(cfg)}))
    top = json.loads(ceil_file.read_text())["ceiling"]
    main = study.summarise(got["heldout"])
    abl = study.summarise(got["single"], baseline="gspo (seed 0)")
    md = [f"Held-out score ({study.HELDOUT}) of {cfg.eval.examples} held-out examples; SFT start {got['base']:.3f}, "
          f"ceiling (ground-truth traces) {top:.3f}; {cfg.study.rl_steps} RL steps, evaluated every "
          f"{cfg.study.eval_every}.", "", study.table(main), "", "Ablations (seed 0):", "",
          study.table(abl, baseline="gspo (seed 0)")]
    out = {"base": got["base"], "ceiling": top, "methods": main, "ablations": abl, "walls": got["walls"]}
    (path / "study.json").write_text(json.dumps(out, indent=1))
    (path / "study.md").write_text("\n".join(md) + "\n")
    if cfg.study.figure and got["heldout"]:
        study.figure(got["train"], got["heldout"], cfg.study.figure, ceiling=top,
                     title=f"{cfg.variant}: difficulty {cfg.data.synthetic_difficulty}, "
                           f"{cfg.study.seeds} seeds, SFT start {got['base']:.2f}")
    print("\n".join(md), flush=True)
    return out


def run(cfg) -> dict:
    if not cfg.study.redraw:
        sft = sft_config(cfg)
        _train(sft, sft.sft.steps)
        for name, method, seed, change in plan(cfg):
            c = run_config(cfg, method, seed, change, name)
            print(f"study: {name} ({method}, seed {seed}{', ' + str(change) if change else ''})", flush=True)
            _train(c, c.rl.steps)
    return report(cfg)


if __name__ == "__main__":  # grain spawns worker processes: keep start-up under this guard
    from visd_jax.training import cli

    cli.main(__file__, job=run, check=check)
