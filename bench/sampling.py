"""Rollout throughput: visd_jax.sampling.generate vs transformers' generate, same config and batch.

    /work/venv/bin/python bench/sampling.py [--sizes tiny,0.5b] [--batch 4] [--new 32]

Random weights (throughput does not depend on them). Both decode exactly --new tokens per
row (no early stop). Prints a markdown table; ratio = ours / transformers. Tokens/s count
the whole call (prefill + decode) on both sides; our prefill (a max_new_tokens=1 call) and
per-token decode step ((total - prefill) / (new - 1)) are shown to say where time goes.
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


def bench(name, B, N, T=64, repeats=3):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    cfg = _config(name)
    model = Qwen25VL.create(cfg, seed=0)
    p = _prompts(cfg, B, T)
    kw = dict(max_new_tokens=N, temperature=1.0, top_p=0.95, stop_ids=(), pad_id=cfg.pad_token_id)
    kw1 = dict(kw, max_new_tokens=1)
    t0 = time.perf_counter()
    jax.block_until_ready(generate(model, p, key=jax.random.key(0), **kw))
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(generate(model, p, key=jax.random.key(0), **kw1))

    with tempfile.TemporaryDirectory() as d:
        save_hf_checkpoint(model, d)
        hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(d).eval()
    ids = torch.as_tensor(p.input_ids)

    def theirs_call(r):
        with torch.no_grad():
            hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=N, min_new_tokens=N,
                        do_sample=True, top_p=0.95, temperature=1.0, pad_token_id=cfg.pad_token_id)

    theirs_call(0)  # warm-up
    # Interleaved, so that both sides see the same load on the shared machine.
    ours, prefill, theirs = [], [], []
    for r in range(repeats):
        ours.append(_best(lambda _: generate(model, p, key=jax.random.key(r + 1), **kw), 1))
        prefill.append(_best(lambda _: generate(model, p, key=jax.random.key(r + 1), **kw1), 1))
        theirs.append(_best(theirs_call, 1))
    ours, prefill, theirs = min(ours), min(prefill), min(theirs)
    return dict(size=name, batch=B, prompt=T, new=N, ours=B * N / ours, theirs=B * N / theirs,
                ratio=theirs / ours, compile=compile_s, prefill=prefill,
                step_ms=1e3 * (ours - prefill) / max(N - 1, 1))


def _best(call, repeats):
    """Fastest of `repeats` timed calls (the machine is shared: the minimum is the least noisy)."""
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(call(r))
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="tiny,0.5b")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--new", type=int, default=32)
    args = ap.parse_args()
    import torch

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; torch threads {torch.get_num_threads()}\n")
    print("| config | batch x prompt | new tokens | ours tok/s | transformers tok/s | ratio "
          "| our prefill ms | our ms/step | our compile s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in args.sizes.split(","):
        r = bench(s, args.batch, args.new)
        print(f"| {r['size']} | {r['batch']} x {r['prompt']} | {r['new']} | {r['ours']:.0f} | {r['theirs']:.0f} "
              f"| {r['ratio']:.1f}x | {1e3 * r['prefill']:.0f} | {r['step_ms']:.1f} | {r['compile']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
