"""What LoRA and the reference KL cost: train-state bytes and step times of one RL minibatch
(score + update) on the small preset, full fine-tuning vs LoRA, each with and without the
release's reference KL (beta 0.04), measured in one run on this machine.

    python bench/lora_refkl.py [--preset small] [--rows 8] [--prompt 256] [--completion 160] [--rank 8]

Score = the old log-probs (and the reference's, when on) of the minibatch; update = the
jitted RL update (GSPO + the KL term). Full fine-tuning keeps a frozen reference copy of the
policy; LoRA's reference is its own base (adapters zeroed), so it stores nothing more.
Text-only rows (no vision blocks); float32 as the local variant runs.
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
from visd_jax.models.lora import LoraSpec, add_lora
from visd_jax.training.batch import RolloutBatch
from visd_jax.training.schedules import make_optimizer
from visd_jax.training.step import Steps, init_state


def _timed(fn, n):
    jax.block_until_ready(fn())
    t = time.perf_counter()
    for _ in range(n):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - t) / n


def _bytes(tree) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def case(cfg, a, *, lora: bool, beta: float):
    model = Qwen25VL.create(cfg, seed=0)
    if lora:
        add_lora(model, LoraSpec(rank=a.rank))
    graphdef, params = nnx.split(model)
    trainable = nnx.LoRAParam if lora else None
    opt, _ = make_optimizer(lr=1e-4, total_steps=100)
    state = init_state(params, opt, teacher=False, ref=beta > 0 and not lora, trainable=trainable)
    steps = Steps(graphdef, opt, jax.tree.map(lambda x: x.sharding, state), temperature=1.0, clip_low=3e-4,
                  clip_high=4e-4, signal_clip=0.2, alpha=0.1, ema_decay=0.99, ref_kl_beta=beta, trainable=trainable)
    rng = np.random.default_rng(0)
    B, L, T = a.rows, a.prompt, a.completion
    ids = rng.integers(0, cfg.text.vocab_size - 100, (B, L + T)).astype(np.int32)
    mask = np.ones_like(ids)
    pos, src = token_layout(ids, mask, [[]] * B, [], None, video_token_id=cfg.video_token_id,
                            image_token_id=cfg.image_token_id, merge=2, tokens_per_second=2, media_end=L)
    b = jax.device_put(RolloutBatch(ids, mask, ids[:, L:].copy(), np.ones((B, T), np.int32), pos, src, None))
    rows = jnp.arange(B, dtype=jnp.int32)
    rewards = jnp.asarray(rng.normal(size=(B // 4, 4)), jnp.float32)
    score = steps.score()
    sc = score(state["params"], None, state["ref"], b, None, rewards, rows)
    t_score = _timed(lambda: score(state["params"], None, state["ref"], b, None, rewards, rows), a.iters)
    fn = steps.rl_update(use_signal=False, use_sd=False)
    holder = {"s": state}

    def update():
        holder["s"], m = fn(holder["s"], b, sc, jnp.float32(0), rows, None, None, None, jnp.bool_(False))
        return m

    t_update = _timed(update, a.iters)
    m = jax.device_get(update())
    s = holder["s"]
    trained = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.LoRAParam if lora else nnx.Param)))
    return {"trained": trained, "params": _bytes(s["params"]), "opt": _bytes(s["opt"]),
            "ref": _bytes(s["ref"]) if s["ref"] is not None else 0, "score": t_score, "update": t_update,
            "kl": float(m.get("ref_kl/kl", float("nan")))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--completion", type=int, default=160)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    a = ap.parse_args()
    cfg = Qwen25VLConfig.preset(a.preset)
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}; preset {a.preset}, {a.rows} rows x "
          f"{a.prompt}+{a.completion} tokens, LoRA rank {a.rank} on attention + MLP", flush=True)
    mib = lambda x: f"{x / 2**20:.1f}"  # noqa: E731
    print("| setup | trained params | params MiB | optimizer MiB | reference MiB | score ms | update ms | "
          "update / full |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    base = None
    for name, lora, beta in (("full", False, 0.0), ("full + ref KL", False, 0.04), ("LoRA", True, 0.0),
                             ("LoRA + ref KL (base)", True, 0.04)):
        r = case(cfg, a, lora=lora, beta=beta)
        base = base or r["update"]
        print(f"| {name} | {r['trained']:,} | {mib(r['params'])} | {mib(r['opt'])} | {mib(r['ref'])} | "
              f"{r['score'] * 1e3:.0f} | {r['update'] * 1e3:.0f} | {r['update'] / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
