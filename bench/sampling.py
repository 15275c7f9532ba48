"""Rollout throughput: visd_jax.sampling.generate vs transformers' generate, same config and batch.

    /work/venv/bin/python bench/sampling.py [--sizes tiny,0.5b] [--batch 4] [--new 32]

Random weights (throughput does not depend on them). Both decode exactly --new tokens per
row (no early stop). Prints a markdown table; ratio = ours / transformers.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import jax
import numpy as np

from visd_jax.models import Qwen25VL, Qwen25VLConfig
from visd_jax.models.hf_io import save_hf_checkpoint
from visd_jax.sampling import Prompts, generate


def _config(name: str) -> Qwen25VLConfig:
    tiny = Qwen25VLConfig.preset("tiny")
    if name == "tiny":
        return tiny
    if name == "0.5b":  # Qwen2.5-0.5B decoder shapes with the tiny vision tower
        text = dataclasses.replace(tiny.text, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                   num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                                   rope_theta=1e6, mrope_section=(8, 12, 12))
        return dataclasses.replace(tiny, text=text,
                                   vision=dataclasses.replace(tiny.vision, out_hidden_size=896))
    raise ValueError(f"unknown size {name!r}")


def _prompts(cfg, B, T, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 999, size=(B, T))
    return Prompts(ids, np.ones_like(ids))


def bench(name, B, N, T=64, repeats=2):
    cfg = _config(name)
    model = Qwen25VL.create(cfg, seed=0)
    p = _prompts(cfg, B, T)
    kw = dict(max_new_tokens=N, temperature=1.0, top_p=0.95, stop_ids=(), pad_id=cfg.pad_token_id)
    t0 = time.perf_counter()
    jax.block_until_ready(generate(model, p, key=jax.random.key(0), **kw))
    compile_s = time.perf_counter() - t0
    ours = []
    for r in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(generate(model, p, key=jax.random.key(r + 1), **kw))
        ours.append(time.perf_counter() - t0)

    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    with tempfile.TemporaryDirectory() as d:
        save_hf_checkpoint(model, d)
        hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(d).eval()
    ids = torch.as_tensor(p.input_ids)
    theirs = []
    with torch.no_grad():
        for r in range(repeats + 1):
            t0 = time.perf_counter()
            hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=N, min_new_tokens=N,
                        do_sample=True, top_p=0.95, temperature=1.0, pad_token_id=cfg.pad_token_id)
            if r:  # the first call warms up
                theirs.append(time.perf_counter() - t0)
    ours_tps, theirs_tps = B * N / min(ours), B * N / min(theirs)
    return dict(size=name, batch=B, prompt=T, new=N, ours=ours_tps, theirs=theirs_tps,
                ratio=ours_tps / theirs_tps, compile=compile_s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="tiny,0.5b")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--new", type=int, default=32)
    args = ap.parse_args()
    import torch

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; torch threads {torch.get_num_threads()}\n")
    print("| config | batch x prompt | new tokens | ours tok/s | transformers tok/s | ratio | our compile s |")
    print("|---|---|---|---|---|---|---|")
    for s in args.sizes.split(","):
        r = bench(s, args.batch, args.new)
        print(f"| {r['size']} | {r['batch']} x {r['prompt']} | {r['new']} | {r['ours']:.0f} | {r['theirs']:.0f} "
              f"| {r['ratio']:.1f}x | {r['compile']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
