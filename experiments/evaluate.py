"""Evaluate a trained policy on held-out data: predictions, per-task reward means, a summary.

    python -m experiments.evaluate                                   # local: the main job's run
    python -m experiments.evaluate --config.eval.policy=W [--config.eval.step=N]
    python -m experiments.evaluate --config=experiments/evaluate.py:tpu --config.model.path=CKPT \\
        --config.eval.annotations=eval.json --config.workdir=gs://BUCKET/eval

The policy: `eval.policy`, a training run's work directory (its newest checkpoint, or
`eval.step`), or `model.path`, a Hugging Face checkpoint. Writes `predictions.jsonl` (one
row per example: completion, parsed answer, every reward), `summary.json` and prints the
per-task table; an interrupted evaluation resumes where it stopped.

V-STaR (`eval.vstar`): the benchmark's five questions per video (visd_jax/eval/vstar_chain.py),
`vstar_predictions.jsonl` and the V-STaR table (Acc, tIoU and vIoU per chain, R@tIoU, AP@vIoU,
AM, mAM, LGM, mLGM), also in summary.json under "vstar":

    python -m experiments.evaluate --config=experiments/evaluate.py:tpu --config.model.path=CKPT \
        --config.eval.vstar=V_STaR_test.json --config.eval.vstar_videos=V-STaR/videos \
        --config.eval.judge=JUDGE_CKPT --config.workdir=gs://BUCKET/vstar

`eval.judge` grades the "what" answers for Acc: "match" (offline content-word match, not the
paper's judge), "policy" (the evaluated model asked V-STaR's judge prompt) or a checkpoint
folder (V-STaR used Qwen2.5-72B-Instruct). `local` asks the synthetic held-out clips.
Variants: `local` (the synthetic held-out split, CPU) and `tpu` (a v5e_8 mesh).
"""
from __future__ import annotations

from experiments import visd_v5e

VARIANTS = ("local", "tpu")
VSTAR_PROMPT_TOKENS = 4096


def get_config(arg: str | None = None):
    variant = arg or "local"
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} for experiments/evaluate.py; choose from {VARIANTS}")
    c = visd_v5e.get_config("local" if variant == "local" else "v5e_8")
    c.variant, c.mode = variant, "sft"  # no training: the mode only satisfies the schema
    c.eval.update(policy="workdir/visd_v5e_local" if variant == "local" else "", step=0)
    if variant == "local":
        c.workdir = "workdir/evaluate_local"
        c.eval.update(examples=20, batch_size=5, vstar="synthetic")
    else:
        c.eval.update(batch_size=32)
    return c


def check(cfg) -> None:
    if not cfg.eval.policy and not cfg.model.path:
        raise ValueError("config.eval.policy: give a training run's work directory, or --config.model.path")
    if not isinstance(cfg.eval.step, int) or cfg.eval.step < 0:
        raise ValueError(f"config.eval.step={cfg.eval.step!r}: an int >= 0 (0: the newest checkpoint)")
    import os

    e = cfg.eval  # before minutes of per-task evaluation, not after
    if e.vstar == "synthetic" and cfg.data.source != "synthetic":
        raise ValueError("config.eval.vstar='synthetic' needs data.source='synthetic'; give a V-STaR file")
    if e.vstar not in ("", "synthetic") and not os.path.isfile(e.vstar):
        raise ValueError(f"config.eval.vstar={e.vstar!r}: no such V-STaR annotation file")
    if e.vstar_videos and not os.path.isdir(e.vstar_videos):
        raise ValueError(f"config.eval.vstar_videos={e.vstar_videos!r}: no such folder")
    if e.judge not in ("match", "policy") and not os.path.isdir(e.judge):
        raise ValueError(f"config.eval.judge={e.judge!r}: 'match', 'policy', or a judge checkpoint folder")


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
    if e.vstar:
        summary["vstar"] = run_vstar(cfg, p)
    (epath.Path(cfg.workdir) / "summary.json").write_text(json.dumps(summary, indent=1))
    print(table(summary), flush=True)
    print(f"predictions: {epath.Path(cfg.workdir) / 'predictions.jsonl'}", flush=True)
    return summary


def run_vstar(cfg, p) -> dict:
    """The V-STaR chains of `eval.vstar` on policy `p`; prints the table, returns the summary."""
    from etils import epath

    from visd_jax.eval import vstar
    from visd_jax.eval.vstar_chain import PREDICTIONS, VStarSet, evaluate_vstar
    from visd_jax.training.setup import run_inputs

    e = cfg.eval
    if e.vstar == "synthetic":
        from data import vstar as synth_vstar
        from visd_jax.training.setup import heldout_synthetic

        ds = heldout_synthetic(cfg, cfg.workdir)
        vset = VStarSet(synth_vstar.write(ds), ds.video_root)
    else:
        vset = VStarSet(e.vstar, e.vstar_videos or None)
    per_call = max(1, e.batch_size // 5)
    # V-STaR's questions run to ~500 tokens of text besides the frames: room for them
    io = run_inputs(p.config or cfg, p.model.config, p.tokenizer, p.tokenizer_dir, blocks_per_batch=5 * per_call,
                    prompt_tokens=VSTAR_PROMPT_TOKENS)
    max_new = e.max_new_tokens or cfg.rl.max_new_tokens
    print(f"V-STaR: {len(vset)} items from {vset.annotations}, judge {e.judge}", flush=True)
    out = evaluate_vstar(lambda: p.model, vset, io, cfg.workdir, items_per_call=per_call, max_new_tokens=max_new,
                         judge=judge_of(cfg, p), rescale=e.vstar_boxes == "rescale",
                         temperature=float(e.temperature), top_p=float(e.top_p),
                         seed=cfg.seed, limit=e.vstar_items or None, progress=cfg.log.progress)
    print(vstar.table(out["metrics"]), flush=True)
    print(f"V-STaR predictions: {epath.Path(cfg.workdir) / PREDICTIONS} ({out['items']} items, "
          f"{out['unusable']} unusable)", flush=True)
    return out


def judge_of(cfg, p):
    """"match", or prompts -> replies of the judge model (the policy or a checkpoint)."""
    if cfg.eval.judge == "match":
        return "match"
    from visd_jax.eval.vstar_protocol import JUDGE_SYSTEM
    from visd_jax.text import special_ids
    from visd_jax.training.judging import batch_generator
    from visd_jax.training.policy import load_policy

    j = p if cfg.eval.judge == "policy" else load_policy(model_path=cfg.eval.judge, dtype=cfg.model.dtype)
    ids = special_ids(j.tokenizer, j.tokenizer_dir)
    return batch_generator(lambda: j.model, j.tokenizer, max_new_tokens=8, max_prompt_tokens=1024,
                           buckets=(256, 512, 1024), pad_id=ids.pad, stop_ids=ids.stop, system=JUDGE_SYSTEM)


if __name__ == "__main__":  # grain spawns worker processes: keep start-up under this guard
    from visd_jax.training import cli

    cli.main(__file__, job=run, check=check)
