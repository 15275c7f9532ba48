"""Benchmark: chunked `token_logprobs` vs naive full logits, forward + backward.

    /work/venv/bin/python bench/losses.py                     # default: a few minutes
    /work/venv/bin/python bench/losses.py --time_max_tokens=16384 --naive_budget_gib=12

Each case is value_and_grad of sum(g * logp) w.r.t. (hidden, unembed) at V = 152064
(Qwen2.5-VL), D = 1024, float32, B = 4 sequences of T = tokens / 4.

Two memory numbers, both honest about what they are:
  * XLA temp: `compiled.memory_analysis().temp_size_in_bytes`, the buffer XLA allocates
    for all intermediates of the compiled program (arguments and outputs excluded). Known
    before running, so it is reported for every case.
  * peak RSS delta: measured in a fresh subprocess per case; after compiling, the kernel's
    peak-RSS counter is reset (/proc/self/clear_refs = 5) and the timed run's VmHWM minus
    the VmRSS before it is reported (intermediates + outputs, inputs excluded).
Cases above --time_max_tokens are compiled but not run (memory from XLA only); a naive
case whose XLA estimate exceeds --naive_budget_gib is never run (the machine has 24 GiB
shared with others) and the table says so.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app, flags

V = 152064
D = 1024
B = 4

_SIZES = flags.DEFINE_list("sizes", ["1024", "2048", "4096", "8192", "16384"], "B*T token counts")
_TIME_MAX = flags.DEFINE_integer("time_max_tokens", 4096, "run (time + RSS) cases up to this many tokens")
_BUDGET = flags.DEFINE_float("naive_budget_gib", 12.0, "never run a case whose XLA estimate exceeds this")
_CHUNK = flags.DEFINE_integer("chunk_size", 0, "token_logprobs chunk_size (0 = library default)")
_REPS = flags.DEFINE_integer("reps", 1, "timed runs per case (the minimum is reported)")
_CASE = flags.DEFINE_string("case", "", "internal: run one case in this process, print JSON")

GIB = 1024**3


def _read_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _build(kind: str, tokens: int, chunk_size: int):
    import jax
    import jax.numpy as jnp

    from visd_jax.losses import token_logprobs, token_logprobs_from_logits

    t = tokens // B
    k = jax.random.split(jax.random.key(0), 4)
    hidden = jax.random.normal(k[0], (B, t, D), jnp.float32)
    unembed = jax.random.normal(k[1], (D, V), jnp.float32) * D**-0.5
    targets = jax.random.randint(k[2], (B, t), 0, V)
    g = jax.random.normal(k[3], (B, t), jnp.float32)

    if kind == "naive":
        def f(h, w):
            logits = jnp.einsum("btd,dv->btv", h, w, preferred_element_type=jnp.float32)
            return jnp.sum(g * token_logprobs_from_logits(logits=logits, targets=targets))
    else:
        def f(h, w):
            return jnp.sum(g * token_logprobs(hidden=h, unembed=w, targets=targets, chunk_size=chunk_size))

    step = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))
    compiled = step.lower(hidden, unembed).compile()
    return compiled, (hidden, unembed)


def _run_case(spec: str) -> dict:
    import jax

    kind, tokens, chunk_size, execute, reps = spec.split(":")
    tokens, chunk_size, execute, reps = int(tokens), int(chunk_size), execute == "1", int(reps)
    t0 = time.perf_counter()
    compiled, args = _build(kind, tokens, chunk_size)
    jax.block_until_ready(args)
    out = {"compile_s": time.perf_counter() - t0}
    ma = compiled.memory_analysis()
    out["temp_bytes"] = int(ma.temp_size_in_bytes)
    out["arg_out_bytes"] = int(ma.argument_size_in_bytes + ma.output_size_in_bytes)
    if execute:
        times, peaks = [], []
        for _ in range(reps):
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM (peak RSS) to the current RSS
            base = _read_status("VmRSS")
            t0 = time.perf_counter()
            res = compiled(*args)
            jax.block_until_ready(res)
            times.append(time.perf_counter() - t0)
            peaks.append(_read_status("VmHWM") - base)
            del res
        out["time_s"] = min(times)
        out["rss_peak_bytes"] = max(peaks)
    return out


def _subprocess(kind, tokens, chunk_size, execute, reps) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    spec = f"{kind}:{tokens}:{chunk_size}:{int(execute)}:{reps}"
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--case={spec}"],
        env=env, capture_output=True, text=True,
    )
    if proc.returncode:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _gib(x):
    return f"{x / GIB:.2f}"


def main(argv):
    del argv
    if _CASE.value:
        print(json.dumps(_run_case(_CASE.value)))
        return
    from visd_jax.losses import DEFAULT_CHUNK_SIZE

    chunk = _CHUNK.value or DEFAULT_CHUNK_SIZE
    notes = []
    print(f"token_logprobs fwd+bwd, V={V}, D={D}, B={B}, float32, chunk_size={chunk} "
          f"(= {B * chunk} tokens per scan step); CPU, {os.cpu_count()} cores\n")
    print("| B*T | naive time s | chunked time s | time ratio | naive XLA temp GiB | "
          "chunked XLA temp GiB | temp ratio | naive peak RSS GiB | chunked peak RSS GiB | RSS ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for tokens in map(int, _SIZES.value):
        run = tokens <= _TIME_MAX.value
        naive = _subprocess("naive", tokens, chunk, False, 1)
        est = naive.get("temp_bytes", 0) + naive.get("arg_out_bytes", 0)
        if run and est > _BUDGET.value * GIB:
            notes.append(f"naive at {tokens} tokens not run: XLA needs {_gib(est)} GiB "
                         f"> budget {_BUDGET.value} GiB")
        if run and est <= _BUDGET.value * GIB:
            naive = _subprocess("naive", tokens, chunk, True, _REPS.value)
        chunked = _subprocess("chunked", tokens, chunk, run, _REPS.value)
        for name, r in (("naive", naive), ("chunked", chunked)):
            if "error" in r:
                notes.append(f"{name} at {tokens} tokens failed: {r['error']}")

        def cell(r, key, fmt):
            return fmt(r[key]) if key in r else "-"

        def ratio(key, fmt=lambda x: f"{x:.2f}x"):
            if key in naive and key in chunked and naive[key]:
                return fmt(chunked[key] / naive[key])
            return "-"

        print(f"| {tokens} | {cell(naive, 'time_s', lambda x: f'{x:.2f}')} | "
              f"{cell(chunked, 'time_s', lambda x: f'{x:.2f}')} | {ratio('time_s')} | "
              f"{cell(naive, 'temp_bytes', _gib)} | {cell(chunked, 'temp_bytes', _gib)} | "
              f"{ratio('temp_bytes', lambda x: f'{100 * x:.1f}%')} | "
              f"{cell(naive, 'rss_peak_bytes', _gib)} | {cell(chunked, 'rss_peak_bytes', _gib)} | "
              f"{ratio('rss_peak_bytes', lambda x: f'{100 * x:.1f}%')} |", flush=True)
    for n in notes:
        print(f"\nnote: {n}")
    print(f"\ninputs (hidden + unembed) and outputs (their gradients) are excluded from every "
          f"memory column; unembed alone is {_gib(D * V * 4)} GiB.")


if __name__ == "__main__":
    app.run(main)
