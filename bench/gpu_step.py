"""RL-update MFU and sampler throughput at 3B on one GPU (random init; the v5e variants' numerics:
float32 master weights, bfloat16 compute and first moment, layers scanned and rematerialised).

    python bench/gpu_step.py [--preset 3b] [--rows 8] [--prompt 1024] [--completion 768]

MFU = the update's model FLOPs (6 x decoder parameters x tokens) / step time / peak bf16
FLOP/s; the sampler's tokens/s against its HBM roofline: each decode step must read the
decoder's bf16 weights and the live KV cache once, so rows / (bytes / HBM bandwidth) is the
most tokens/s any implementation reaches. Peaks are given on the command line (defaults:
the H200's measured 790 TFLOP/s bf16 matmul and 4.3 TB/s copy bandwidth, KINDS.md).
Prints one table; text-only rows (the vision tower is not in these numbers).
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from visd_jax.models import Qwen25VL, Qwen25VLConfig
from visd_jax.models.canvas import token_layout
from visd_jax.sampling.generate import Prompts, generate
from visd_jax.training.batch import RolloutBatch
from visd_jax.training.schedules import make_optimizer
from visd_jax.training.step import Steps, init_state


def _timed(fn, n):
    out = fn()
    jax.block_until_ready(out)
    t = time.perf_counter()
    for _ in range(n):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / n, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="3b")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=1024)
    ap.add_argument("--completion", type=int, default=768)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--new_tokens", type=int, default=256)
    ap.add_argument("--peak_tflops", type=float, default=790.0)
    ap.add_argument("--hbm_tbs", type=float, default=4.3)
    ap.add_argument("--remat", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--skip_sampler", action="store_true")
    a = ap.parse_args()
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}", flush=True)
    cfg = Qwen25VLConfig.preset(a.preset)
    model = Qwen25VL.create(cfg, seed=0, param_dtype=jnp.float32, dtype=jnp.bfloat16, remat=bool(a.remat),
                            scan_layers=True)
    graphdef, params = nnx.split(model)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    opt, _ = make_optimizer(lr=1e-6, total_steps=100, mu_dtype=jnp.bfloat16)
    state = init_state(params, opt, teacher=False)
    steps = Steps(graphdef, opt, jax.tree.map(lambda x: x.sharding, state), temperature=1.0, clip_low=3e-4,
                  clip_high=4e-4, signal_clip=0.2, alpha=0.1, ema_decay=0.99)
    rng = np.random.default_rng(0)
    B, L, T = a.rows, a.prompt, a.completion
    ids = rng.integers(0, 150000, (B, L + T)).astype(np.int32)
    mask = np.ones_like(ids)
    pos, src = token_layout(ids, mask, [[]] * B, [], None, video_token_id=cfg.video_token_id,
                            image_token_id=cfg.image_token_id, merge=2, tokens_per_second=2, media_end=L)
    b = jax.device_put(RolloutBatch(ids, mask, ids[:, L:].copy(), np.ones((B, T), np.int32), pos, src, None))
    rows = jnp.arange(B, dtype=jnp.int32)
    rewards = jnp.asarray(rng.normal(size=(B // a.samples, a.samples)), jnp.float32)
    scored = steps.score()(state["params"], None, None, b, None, rewards, rows)
    fn = steps.rl_update(use_signal=False, use_sd=False)
    flops = fn.lower(state, b, scored, jnp.float32(0), rows, None, None, None, jnp.bool_(False)) \
        .compile().cost_analysis()
    flops = float((flops[0] if isinstance(flops, (list, tuple)) else flops)["flops"])
    holder = {"s": state}

    def update():
        holder["s"], m = fn(holder["s"], b, scored, jnp.float32(0), rows, None, None, None, jnp.bool_(False))
        return m

    dt, _ = _timed(update, a.iters)
    text = n_params - sum(x.size for x in jax.tree.leaves(nnx.state(model.visual)))
    # MFU counts the model's 6ND (forward + backward) only; a remat run also recomputes the
    # forward (hardware FLOPs 8ND). XLA's count misses the scanned layers' trip count.
    model_flops = 6 * text * B * (L + T)
    peak = a.peak_tflops * 1e12
    rows_out = [("rl_update", f"{B} x {L}+{T}, remat {a.remat}", f"{dt * 1e3:.0f} ms", f"{model_flops / 1e12:.0f}",
                 f"{model_flops / dt / 1e12:.0f}", f"{100 * model_flops / dt / peak:.1f}%",
                 f"HFU {100 * model_flops * (4 / 3 if a.remat else 1) / dt / peak:.1f}%; XLA counted "
                 f"{flops / 1e12:.1f} TFLOP (one scan step)")]
    print(f"{a.preset}: {n_params / 1e9:.2f}B params ({text / 1e9:.2f}B decoder)")
    print("| program | shape | time | TFLOP (6ND) | TFLOP/s | MFU | note |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("| " + " | ".join(rows_out[0]) + " |", flush=True)
    if a.skip_sampler:
        return

    P, G, N = a.prompts, a.samples, a.new_tokens
    pid = rng.integers(0, 150000, (P, L)).astype(np.int32)
    pm = np.ones_like(pid)
    ppos, psrc = token_layout(pid, pm, [[]] * P, [], None, video_token_id=cfg.video_token_id,
                              image_token_id=cfg.image_token_id, merge=2, tokens_per_second=2)
    prompts = Prompts(pid, pm, media=None, positions=ppos, src=None)
    model = nnx.merge(graphdef, holder["s"]["params"])
    sample = lambda: generate(model, prompts, key=jax.random.key(0), num_samples=G, max_new_tokens=N,  # noqa: E731
                              temperature=1.0, top_p=0.95, stop_ids=(), pad_id=0).tokens
    ds, _ = _timed(sample, max(2, a.iters // 3))
    tc = cfg.text
    w_bytes = 2 * (text - tc.vocab_size * tc.hidden_size * (0 if cfg.tie_word_embeddings else 1))
    kv = 2 * tc.num_hidden_layers * tc.num_key_value_heads * tc.head_dim * 2  # bytes per cached token
    avg_len = L + N / 2
    step_bytes = w_bytes + P * G * avg_len * kv
    roof = P * G / (step_bytes / (a.hbm_tbs * 1e12))
    got = P * G * N / ds
    rows_out.append(("sample", f"{P}x{G} rows, {L}+{N}", f"{ds * 1e3:.0f} ms", "", "", "",
                     f"{got:.0f} tok/s vs HBM roofline {roof:.0f} tok/s ({100 * got / roof:.0f}%), "
                     f"prefill included"))
    print("| " + " | ".join(rows_out[1]) + " |")


if __name__ == "__main__":
    main()
