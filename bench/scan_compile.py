"""Compile time vs decoder depth: `scan_layers=True` (one scanned layer) vs the unrolled loop.

    /work/venv/bin/python bench/scan_compile.py [--layers 4,16] [--seq 64]

Config: the `tiny` preset with --layers decoder layers (width 64); text-only input
[2, --seq]. Programs: the forward (logits) and a training-like value_and_grad of the mean
token cross-entropy with remat=True. Parameters are abstract (`nnx.eval_shape`): only
tracing + lowering + XLA compilation are timed (fastest of --repeats, each from a clean
jit cache). Prints a markdown table; ratio = unrolled / scanned.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from visd_jax.models import Qwen25VL, Qwen25VLConfig


def _config(layers: int) -> Qwen25VLConfig:
    tiny = Qwen25VLConfig.preset("tiny")
    return dataclasses.replace(tiny, text=dataclasses.replace(tiny.text, num_hidden_layers=layers))


def compile_seconds(layers: int, *, scan: bool, grad: bool, seq: int, repeats: int) -> float:
    cfg = _config(layers)
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(lambda: Qwen25VL(cfg, rngs=nnx.Rngs(0), remat=grad, scan_layers=scan))
    graphdef, state = nnx.split(abstract)
    ids = jax.ShapeDtypeStruct((2, seq), jnp.int32)

    def forward(state, ids):
        return nnx.merge(graphdef, state)(ids)

    def loss(state, ids):
        logits = forward(state, ids)
        return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], ids[:, 1:]).mean()

    fn = jax.value_and_grad(loss) if grad else forward
    best = float("inf")
    for _ in range(repeats):
        jax.clear_caches()
        t0 = time.perf_counter()
        jax.jit(fn).lower(state, ids).compile()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="4,16")
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    print("| program | layers | unrolled compile s | scanned compile s | ratio |")
    print("|---|---|---|---|---|")
    for grad in (False, True):
        for layers in (int(x) for x in args.layers.split(",")):
            kw = dict(grad=grad, seq=args.seq, repeats=args.repeats)
            unrolled = compile_seconds(layers, scan=False, **kw)
            scanned = compile_seconds(layers, scan=True, **kw)
            name = "value_and_grad, remat" if grad else "forward"
            print(f"| {name} | {layers} | {unrolled:.2f} | {scanned:.2f} | {unrolled / scanned:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
