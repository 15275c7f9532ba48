"""Rollouts: jitted prefill + decode loop over a static-shape KV cache.

The video is encoded and the prompt prefilled ONCE per prompt; the cache is then repeated
for the G samples (rows b*G .. b*G+G-1 belong to prompt b). Prompts must be left-padded so
every row's last prompt token sits at the same slot.

Positions of generated tokens continue the prompt's last position (+1 per token), which is
what a training forward pass over prompt+completion computes with `get_rope_index`, so
sampled log-probs equal the learner's. (transformers' generate uses max(prompt positions)+1;
the two agree whenever the prompt ends with text, as chat prompts do.)
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from visd_jax.models.decoder import KVCache
from visd_jax.parallel import shard


class Prompts(NamedTuple):
    input_ids: np.ndarray  # [B, T] left-padded
    attention_mask: np.ndarray  # [B, T]
    pixel_values_videos: np.ndarray | None = None  # [N, patch_dim]
    video_grid_thw: np.ndarray | None = None  # [num_videos, 3], concrete
    second_per_grid_ts: np.ndarray | None = None  # [num_videos]


class Samples(NamedTuple):
    tokens: jax.Array  # [B*G, max_new_tokens], pad after the stop token
    logprobs: jax.Array  # [B*G, max_new_tokens] log-prob under the sampling distribution
    mask: jax.Array  # [B*G, max_new_tokens] 1 up to and including the stop token


def filter_logits(logits_BxV: jax.Array, *, temperature: float, top_k: int | None, top_p: float) -> jax.Array:
    """logits/temperature with tokens outside the top-k and the top-p nucleus set to -inf.

    The nucleus is the smallest set of most likely tokens whose probability reaches top_p
    (Holtzman et al., 2020); the most likely token is always kept.
    """
    x = logits_BxV.astype(jnp.float32) / temperature
    if top_k is not None:
        kth = jax.lax.top_k(x, top_k)[0][..., -1:]
        x = jnp.where(x >= kth, x, -jnp.inf)
    if top_p < 1.0:
        x = jnp.where(x >= _nucleus_cutoff(x, top_p), x, -jnp.inf)
    return x


def _nucleus_cutoff(x_BxV: jax.Array, top_p: float, iters: int = 48) -> jax.Array:
    """Largest c with P(x >= c) >= top_p, by bisection on c: [B, 1].

    That c is the smallest logit of the nucleus. Bisection costs `iters` masked sums over
    the vocabulary instead of a full sort (which dominated CPU decode time at V = 152k);
    48 halvings of the logit range are below float32 resolution, so the set is exact.
    """
    probs = jax.nn.softmax(x_BxV, axis=-1)
    finite = jnp.isfinite(x_BxV)
    lo = jnp.min(jnp.where(finite, x_BxV, jnp.inf), axis=-1, keepdims=True)  # mass 1 >= top_p
    hi = jnp.max(x_BxV, axis=-1, keepdims=True)

    def body(_, lohi):
        lo, hi = lohi
        mid = 0.5 * (lo + hi)
        ok = jnp.sum(jnp.where(x_BxV >= mid, probs, 0.0), axis=-1, keepdims=True) >= top_p
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, hi = jax.lax.fori_loop(0, iters, body, (lo, hi))
    # hi itself may qualify (e.g. the top token alone holds top_p of the mass).
    mass_hi = jnp.sum(jnp.where(x_BxV >= hi, probs, 0.0), axis=-1, keepdims=True)
    return jnp.where(mass_hi >= top_p, hi, lo)


def generate(model, prompts: Prompts | dict, *, key: jax.Array, num_samples: int = 1, max_new_tokens: int,
             temperature: float = 1.0, top_p: float = 0.95, top_k: int | None = None,
             stop_ids=(), pad_id: int | None = None) -> Samples:
    """Samples `num_samples` completions per prompt. temperature=0 is greedy decoding.

    Deterministic for a key. Log-probs are under the distribution actually sampled from
    (after temperature, top-k, top-p); for greedy decoding, under the model's softmax.
    """
    p = Prompts(**prompts) if isinstance(prompts, dict) else prompts
    ids = np.asarray(p.input_ids)
    mask = np.asarray(p.attention_mask)
    if ids.ndim != 2 or mask.shape != ids.shape:
        raise ValueError(f"prompts.input_ids {ids.shape} and attention_mask {mask.shape} must be equal [B, T]")
    if not mask[:, -1].all():
        raise ValueError("prompts must be left-padded: attention_mask[:, -1] must be 1 on every row")
    if max_new_tokens < 1 or num_samples < 1:
        raise ValueError(f"max_new_tokens ({max_new_tokens}) and num_samples ({num_samples}) must be >= 1")
    if temperature < 0 or not 0 < top_p <= 1 or (top_k is not None and top_k < 1):
        raise ValueError(f"bad sampling settings: temperature={temperature}, top_p={top_p}, top_k={top_k}")
    cfg = model.config
    pad_id = cfg.pad_token_id if pad_id is None else pad_id
    if pad_id is None:
        raise ValueError("pad_id is needed (the config has no pad_token_id)")
    grid = None if p.video_grid_thw is None else tuple(map(tuple, np.asarray(p.video_grid_thw).tolist()))
    graphdef, state = nnx.split(model)
    fn = _compiled(graphdef, grid, num_samples, max_new_tokens, float(temperature), float(top_p), top_k,
                   tuple(int(s) for s in np.atleast_1d(stop_ids)), int(pad_id))
    return fn(state, jnp.asarray(ids), jnp.asarray(mask), p.pixel_values_videos,
              p.second_per_grid_ts, key)


@functools.lru_cache(maxsize=32)
def _compiled(graphdef, grid, G, N, temperature, top_p, top_k, stop_ids, pad_id):
    @jax.jit
    def run(state, ids, mask, pixels, seconds, key):
        model = nnx.merge(graphdef, state)
        B, T = ids.shape
        grid_np = None if grid is None else np.asarray(grid)
        video = None if pixels is None else model.encode_video(pixels, grid_np)
        h = model.embed(ids, video)
        pos, _ = model.rope_index(ids, mask, grid_np, seconds)
        cache = model.init_cache(B, T + N)
        key_valid = jnp.concatenate([mask.astype(bool), jnp.zeros((B, N), bool)], axis=1)
        hidden, cache = model.decode(h, pos, key_valid, cache, 0)
        logits = model.logits(hidden[:, -1:])[:, 0]
        next_pos = pos[:, :, -1].max(axis=0) + 1  # [B]

        # Share the prefill across the G samples of each prompt.
        rep = lambda x, axis=0: jnp.repeat(x, G, axis=axis)  # noqa: E731
        cache = KVCache(rep(cache.k, 1), rep(cache.v, 1))
        cache = KVCache(*(shard(c, ("layers", "batch", "seq", "kv_heads", "head_dim")) for c in cache))
        logits, key_valid, next_pos = rep(logits), rep(key_valid), rep(next_pos)
        BG = B * G
        stops = jnp.asarray(stop_ids if stop_ids else (-1,), jnp.int32)

        def step(i, carry):
            cache, logits, key_valid, done, toks, lps, msk, key = carry
            key, sub = jax.random.split(key)
            if temperature == 0.0:
                tok = jnp.argmax(logits, axis=-1)
                lp_all = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
            else:
                filt = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p)
                tok = jax.random.categorical(sub, filt, axis=-1)
                lp_all = jax.nn.log_softmax(filt, axis=-1)
            lp = jnp.take_along_axis(lp_all, tok[:, None], axis=-1)[:, 0]
            live = ~done
            tok = jnp.where(live, tok, pad_id).astype(jnp.int32)
            toks = toks.at[:, i].set(tok)
            lps = lps.at[:, i].set(jnp.where(live, lp, 0.0))
            msk = msk.at[:, i].set(live)
            done = done | jnp.isin(tok, stops)
            key_valid = key_valid.at[:, T + i].set(live)
            pos_i = jnp.broadcast_to((next_pos + i)[None, :, None], (3, BG, 1))
            hid, cache = model.decode(model.embed(tok[:, None]), pos_i, key_valid, cache, T + i)
            logits = model.logits(hid)[:, 0]
            return cache, logits, key_valid, done, toks, lps, msk, key

        carry = (cache, logits, key_valid, jnp.zeros((BG,), bool), jnp.full((BG, N), pad_id, jnp.int32),
                 jnp.zeros((BG, N), jnp.float32), jnp.zeros((BG, N), bool), key)
        carry = jax.lax.fori_loop(0, N, step, carry)
        return Samples(carry[4], carry[5], carry[6].astype(jnp.int32))

    return run
