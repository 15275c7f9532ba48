"""The learned VP-Selector (VisionCoach paper section 3.3), a pre-pass before RL:

  1. data: every training example under each of the five visual prompts, answered by the
     proxy reasoners (by default two SFT policies trained here with different seeds, like
     the main job's cold start; or any Hugging Face checkpoints); label = the kind with the
     best mean (accuracy + grounding). `selector_data.jsonl`, resumable.
  2. model: a small Qwen2.5-VL with LoRA trained to name that kind from the raw video and the
     question (`selector/`: an sft-mode run, resumable).
  3. report: held-out accuracy against majority and random; the prompted reward on hard
     examples under learned vs fixed:darken vs raw vs oracle selection (`report.md`), and the
     prediction cache of every example (`predictions.json`).

    python -m experiments.vp_selector                         # local: CPU, synthetic set
    python -m experiments.visioncoach --config.coach.selector=learned:workdir/vp_selector_local

Variants: `local` (two `small` SFT proxies, the selector LoRA on the first one's weights,
synthetic set, 2 CPU cores) and
`v5e_8` (a Qwen2.5-VL-3B selector from --config.model.path with LoRA, proxies from
--config.selector.proxies as checkpoint paths, STGR data).
"""
from __future__ import annotations

from experiments import visd_v5e

VARIANTS = ("local", "v5e_8")


def get_config(arg: str | None = None):
    variant = arg or "local"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} for experiments/vp_selector.py; choose from {VARIANTS}")
    c = visd_v5e.get_config(variant)  # the policy's data, mesh and precision
    c.variant = variant
    c.mode = "sft"  # the selector is trained by the trainer's SFT update on its own targets
    c.sft.update(prompted_frac=0.0, privileged_frac=0.0, max_claims=0)
    c.model.lora.update(rank=8, alpha=16.0, targets="attention,mlp", vision=True)
    # proxies: "sft:SEED" (an SFT policy trained here from the variant's main-job config) or
    # checkpoint directories, comma-separated; each answers every example under every kind
    # init "proxy": the selector starts from the first SFT proxy's weights (a VLM that has
    # learned this data, as the paper's starts from a pretrained one) with LoRA on top
    c.selector = dict(proxies="sft:1,sft:2", proxy_sft_steps=120, num_generations=4, max_new_tokens=160,
                      holdout=0.25, predict_batch=8, limit=0, init="proxy")
    if variant == "local":
        c.workdir = "workdir/vp_selector_local"
        c.data.synthetic_examples = 60  # 12 clips x 5 tasks: 45 to train on, 15 held out
        c.sft.update(steps=150, batch_size=8, lr=2e-3, warmup_steps=10)
        c.rl.update(steps=0, prompts_per_step=5)  # 5 examples per collection chunk
        c.checkpoint.update(every=50, keep=1)
    else:
        c.model.lora.rank = 16
        c.selector.update(proxies="", init="")  # required: two or more checkpoint directories
        c.sft.update(steps=600, batch_size=16, lr=1e-4, warmup_steps=30)
        c.rl.update(steps=0)
    return c


def check(cfg) -> None:
    """The `selector` section (validate() checks the rest)."""
    s = cfg.selector
    specs = [p.strip() for p in s.proxies.split(",") if p.strip()]
    if not specs:
        raise ValueError("config.selector.proxies: give one or more proxies, 'sft:SEED' or checkpoint directories")
    for p in specs:
        if p.startswith("sft:") and not p[4:].lstrip("-").isdigit():
            raise ValueError(f"config.selector.proxies: {p!r}: 'sft:SEED' takes an integer seed")
    if s.init not in ("", "proxy"):
        raise ValueError(f"config.selector.init={s.init!r}: '' (model.preset / model.path as given) or 'proxy'")
    if s.init == "proxy" and not any(p.startswith("sft:") for p in specs):
        raise ValueError("config.selector.init='proxy' needs an 'sft:SEED' proxy to start from")
    if not 0 < s.holdout < 1:
        raise ValueError(f"config.selector.holdout={s.holdout!r}: in (0, 1)")
    for field in ("proxy_sft_steps", "num_generations", "max_new_tokens", "predict_batch"):
        if not isinstance(s[field], int) or s[field] < 1:
            raise ValueError(f"config.selector.{field}={s[field]!r}: a positive int")
    if cfg.mode != "sft" or not cfg.sft.steps:
        raise ValueError("config.mode must stay 'sft' with sft.steps > 0: the selector is trained by SFT steps")


def _proxy_config(cfg, spec: str):
    """A proxy's trainer config: the main job's SFT cold start with its own seed, or a
    checkpoint directory used as it is (sft.steps 1 is never run: the trainer needs a step)."""
    import os

    c = visd_v5e.get_config(cfg.variant)
    c.mode, c.data = "sft", cfg.data
    c.rl.update(prompts_per_step=cfg.rl.prompts_per_step, num_generations=cfg.selector.num_generations,
                max_new_tokens=cfg.selector.max_new_tokens, steps=0)
    if spec.startswith("sft:"):
        c.seed, c.sft.steps = int(spec[4:]), cfg.selector.proxy_sft_steps
        c.workdir = os.path.join(cfg.workdir, f"proxy_sft_{c.seed}")
    else:
        c.model.update(preset="", path=spec)
        c.sft.steps = 1
        c.workdir = os.path.join(cfg.workdir, "proxy_" + os.path.basename(os.path.normpath(spec)))
    return c


def run(cfg) -> dict:
    import gc
    import json
    import logging

    from etils import epath

    from visd_jax.training.trainer import Trainer
    from visd_jax.vp_selector import dataset, model, report
    from visd_jax.vp_selector.labels import write_predictions

    logging.getLogger("visd_jax").setLevel(logging.INFO)
    wd = epath.Path(cfg.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    s = cfg.selector
    data_path = str(wd / "selector_data.jsonl")
    proxies = []
    for spec in (p.strip() for p in s.proxies.split(",") if p.strip()):
        t = Trainer(_proxy_config(cfg, spec))
        if spec.startswith("sft:"):
            t.run()  # resumes; a finished run only reloads
        proxies.append(dataset.Proxy(spec, t))
        print(f"proxy {spec}: ready ({t.workdir})", flush=True)
    stats = dataset.collect(proxies, data_path, num_generations=s.num_generations, holdout=s.holdout, seed=cfg.seed,
                            limit=s.limit or None, progress=cfg.log.progress)
    print(f"selector data: {json.dumps(stats)}", flush=True)
    for p in proxies:
        p.trainer.ckpt.close()
    del proxies, t
    gc.collect()

    rows = dataset.read_rows(data_path)
    summary = dataset.summary(rows)
    sel_cfg = cfg.copy_and_resolve_references()
    with sel_cfg.unlocked():
        sel_cfg.workdir = str(wd / "selector")
        if s.init == "proxy":
            first = next(p for p in (q.strip() for q in s.proxies.split(",")) if p.startswith("sft:"))
            src = _proxy_config(cfg, first)
            sel_cfg.model.update(init_from=src.workdir, preset=src.model.preset, path=src.model.path)
    (wd / model.CONFIG_FILE).write_text(sel_cfg.to_json())
    t = Trainer(sel_cfg)
    losses = model.train(t, [r for r in rows if not r["heldout"]], batch_size=cfg.sft.batch_size, seed=cfg.seed)
    preds = model.predict(t, [r["index"] for r in rows], batch_size=s.predict_batch)
    t.ckpt.close()
    write_predictions(str(wd / "predictions.json"), preds, meta={"selector": str(wd)})
    result = report.evaluate(rows, preds, hard_threshold=cfg.coach.hard_threshold)
    md = report.tables(summary, result)
    (wd / "report.md").write_text(md + "\n")
    (wd / "report.json").write_text(json.dumps({"data": summary, **result}, indent=1))
    print(md, flush=True)
    if losses:
        print(f"selector loss: first {losses[0]['loss']:.3f}, last {losses[-1]['loss']:.3f}", flush=True)
    print(f"predictions: {wd / 'predictions.json'}  (RL: --config.coach.selector=learned:{wd})", flush=True)
    return {"data": summary, **result}


if __name__ == "__main__":  # grain spawns worker processes: keep start-up under this guard
    from visd_jax.training import cli

    cli.main(__file__, job=run, check=check)
