"""Rollouts: one jitted program, prefill then a decode `while_loop` over a static KV cache.

The videos and images are encoded and the prompt prefilled ONCE per prompt; the cache is then repeated
for the G samples (rows b*G .. b*G+G-1 belong to prompt b). Prompts must be left-padded so
every row's last prompt token sits at the same slot.

Cost: one prefill plus N-1 single-token decoder steps for N new tokens (the prefill's last
logits give token 0; token N-1 is never fed back). The loop exits as soon as every row has
stopped; shapes stay static, so finished slots keep pad / 0 / 0. The cache [L, B*G, S, G, K]
is allocated once and written in place (`dynamic_update_slice` on the loop carry).

Positions of generated tokens continue the prompt's last position (+1 per token), which is
what a training forward pass over prompt+completion computes with `get_rope_index`, so
sampled log-probs equal the learner's. (transformers' generate uses max(prompt positions)+1;
the two agree whenever the prompt ends with text, as chat prompts do.)

Under `jax.set_mesh`, rows are sharded over ("data", "fsdp") and heads over "tensor" by the
`visd_jax.parallel` rules (logical names batch / kv_heads); the result equals one device's.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from visd_jax.models.decoder import KVCache
from visd_jax.models.model import media_token_counts
from visd_jax.parallel import shard
from visd_jax.sampling.filters import filter_logits


class Prompts(NamedTuple):
    input_ids: np.ndarray  # [B, T] left-padded
    attention_mask: np.ndarray  # [B, T]
    pixel_values_videos: np.ndarray | None = None  # [N, patch_dim]
    video_grid_thw: np.ndarray | None = None  # [num_videos, 3], concrete
    second_per_grid_ts: np.ndarray | None = None  # [num_videos]
    pixel_values: np.ndarray | None = None  # [N_img, patch_dim] images, each a repeated frame pair
    image_grid_thw: np.ndarray | None = None  # [num_images, 3], concrete, t = 1
    # The bucketed form (`training.batch.prompt_batch`): media in canvases, with the M-RoPE
    # positions and each media token's canvas token from the host; compiles once per bucket.
    media: object | None = None  # models.canvas.Media
    positions: np.ndarray | None = None  # [3, B, T]
    src: np.ndarray | None = None  # [B, T]


class Samples(NamedTuple):
    tokens: jax.Array  # [B*G, max_new_tokens], pad after the stop token
    logprobs: jax.Array  # [B*G, max_new_tokens] log-prob under the sampling distribution
    mask: jax.Array  # [B*G, max_new_tokens] 1 up to and including the stop token


def generate(model, prompts: Prompts | dict, *, key: jax.Array, num_samples: int = 1, max_new_tokens: int,
             temperature: float = 1.0, top_p: float = 0.95, top_k: int | None = None,
             stop_ids=(), pad_id: int | None = None, banned_ids=()) -> Samples:
    """Samples `num_samples` completions per prompt. temperature=0 is greedy decoding.

    Deterministic for a key. Log-probs are under the distribution actually sampled from
    (after temperature, top-k, top-p); for greedy decoding, under the model's softmax.
    `banned_ids` are never sampled (their logits are -inf before any filter): the trainer
    bans the media tokens, which only the pipeline may place.
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
    packed = p.positions is not None
    if packed and (p.pixel_values_videos is not None or p.pixel_values is not None or (p.media is None) != (
            p.src is None)):
        raise ValueError("bucketed prompts take media, positions and src, not pixel_values(_videos)")
    if (p.pixel_values_videos is None) != (p.video_grid_thw is None):
        raise ValueError("prompts.pixel_values_videos and prompts.video_grid_thw must be given together")
    if (p.pixel_values is None) != (p.image_grid_thw is None):
        raise ValueError("prompts.pixel_values and prompts.image_grid_thw must be given together")
    cfg = model.config
    if top_k is not None and top_k > cfg.text.vocab_size:
        raise ValueError(f"top_k={top_k} exceeds the vocabulary size {cfg.text.vocab_size}")
    pad_id = cfg.pad_token_id if pad_id is None else pad_id
    if pad_id is None:
        raise ValueError("pad_id is needed (the config has no pad_token_id)")
    grid = _static_grid(p.video_grid_thw)
    igrid = _static_grid(p.image_grid_thw)
    if not packed:  # (bucketed prompts were checked where their src was built: canvas.token_layout)
        # The ids are concrete here (inside the jit they are not): check token counts up front.
        _check_tokens(ids, cfg.video_token_id, grid, cfg.vision.spatial_merge_size, "video")
        _check_tokens(ids, cfg.image_token_id, igrid, cfg.vision.spatial_merge_size, "image")
    graphdef, state = nnx.split(model)
    fn = _compiled(graphdef, grid, num_samples, max_new_tokens, float(temperature), float(top_p), top_k,
                   tuple(int(s) for s in np.atleast_1d(stop_ids)), int(pad_id), igrid,
                   tuple(sorted({int(b) for b in np.atleast_1d(banned_ids)})), packed)
    return fn(state, jnp.asarray(ids), jnp.asarray(mask), p.pixel_values_videos,
              p.second_per_grid_ts, key, p.pixel_values, p.media, p.positions, p.src)


def _static_grid(grid_thw):
    return None if grid_thw is None else tuple(map(tuple, np.asarray(grid_thw, np.int64).reshape(-1, 3).tolist()))


def _check_tokens(ids, token_id: int, grid, merge: int, what: str):
    n, want = media_token_counts(ids, token_id, grid, merge)
    if n != want:
        raise ValueError(f"prompts.input_ids hold {n} {what} tokens (id {token_id}) but "
                         f"prompts.{what}_grid_thw {list(grid or [])} gives {want} merged patches")


def _picker(temperature: float, top_p: float, top_k: int | None, banned: tuple[int, ...] = ()):
    """(logits [B, V], key) -> (token [B] int32, its log-prob [B]) under the sampled law."""

    def pick(logits_BxV, key):
        if banned:
            logits_BxV = logits_BxV.at[:, np.asarray(banned)].set(-jnp.inf)
        if temperature == 0.0:
            tok = jnp.argmax(logits_BxV, axis=-1)
            lp_all = jax.nn.log_softmax(logits_BxV.astype(jnp.float32), axis=-1)
        else:
            filt = filter_logits(logits_BxV, temperature=temperature, top_k=top_k, top_p=top_p)
            tok = jax.random.categorical(key, filt, axis=-1)
            lp_all = jax.nn.log_softmax(filt, axis=-1)
        return tok.astype(jnp.int32), jnp.take_along_axis(lp_all, tok[:, None], axis=-1)[:, 0]

    return pick


@functools.lru_cache(maxsize=32)
def _compiled(graphdef, grid, G, N, temperature, top_p, top_k, stop_ids, pad_id, igrid=None, banned=(),
              packed=False):
    pick = _picker(temperature, top_p, top_k, banned)
    stops = np.asarray(stop_ids if stop_ids else (-1,), np.int32)

    @jax.jit
    def run(state, ids, mask, pixels, seconds, key, image_pixels=None, media=None, positions=None, src=None):
        # float32 master weights are read in the compute dtype: cast once here, not in
        # every decode step (which would read twice the bytes per token)
        dtype = nnx.merge(graphdef, state).dtype
        state = jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, state)
        model = nnx.merge(graphdef, state)
        B, T = ids.shape
        BG = B * G
        # Token N-1 is sampled but never fed back, so N-1 generated slots suffice.
        S = T + N - 1
        if packed:
            h = model.embed_media(ids, None if media is None else model.encode_media(media), src)
            pos = positions
        else:
            grid_np = None if grid is None else np.asarray(grid)
            igrid_np = None if igrid is None else np.asarray(igrid)
            video = None if pixels is None else model.encode_video(pixels, grid_np)
            image = None if image_pixels is None else model.encode_image(image_pixels, igrid_np)
            h = model.embed(ids, video, image_embeds_NxD=image)
            pos, _ = model.rope_index(ids, mask, grid_np, seconds, image_grid_thw=igrid_np)
        key_valid = jnp.concatenate([mask.astype(bool), jnp.zeros((B, N - 1), bool)], axis=1)
        hidden, cache = model.decode(h, pos, key_valid, _sharded(model.init_cache(B, S)), 0)
        logits = model.logits(hidden[:, -1:])[:, 0]
        next_pos = pos[:, :, -1].max(axis=0) + 1  # [B]

        # Share the prefill across the G samples of each prompt (rows b*G .. b*G+G-1).
        rep = lambda x, axis=0: jnp.repeat(x, G, axis=axis)  # noqa: E731
        cache = _sharded(KVCache(rep(cache.k, 1), rep(cache.v, 1)))
        logits, key_valid, next_pos = rep(logits), rep(key_valid), rep(next_pos)

        key, sub = jax.random.split(key)
        tok, lp = pick(logits, sub)
        toks = jnp.full((BG, N), pad_id, jnp.int32).at[:, 0].set(tok)
        lps = jnp.zeros((BG, N), jnp.float32).at[:, 0].set(lp)
        live = jnp.ones((BG,), bool)
        msk = jnp.zeros((BG, N), bool).at[:, 0].set(live)
        done = jnp.isin(tok, stops)

        def more(carry):
            i, done = carry[0], carry[4]
            return (i < N) & ~jnp.all(done)

        def step(carry):
            # Feed token i-1 (slot T+i-1, a key only where it was live), sample token i.
            i, cache, key_valid, (tok, live), done, toks, lps, msk, key = carry
            key_valid = jax.lax.dynamic_update_index_in_dim(key_valid, live, T + i - 1, axis=1)
            pos_i = jnp.broadcast_to((next_pos + i - 1)[None, :, None], (3, BG, 1))
            hid, cache = model.decode(model.embed(tok[:, None]), pos_i, key_valid, cache, T + i - 1)
            key, sub = jax.random.split(key)
            tok, lp = pick(model.logits(hid)[:, 0], sub)
            live = ~done
            tok = jnp.where(live, tok, pad_id)
            toks = jax.lax.dynamic_update_index_in_dim(toks, tok, i, axis=1)
            lps = jax.lax.dynamic_update_index_in_dim(lps, jnp.where(live, lp, 0.0), i, axis=1)
            msk = jax.lax.dynamic_update_index_in_dim(msk, live, i, axis=1)
            done = done | jnp.isin(tok, stops)
            return i + 1, cache, key_valid, (tok, live), done, toks, lps, msk, key

        # Exits once every row has stopped: the slots left keep their initial pad / 0 / 0.
        carry = (1, cache, key_valid, (tok, live), done, toks, lps, msk, key)
        carry = jax.lax.while_loop(more, step, carry)
        _, _, _, _, _, toks, lps, msk, _ = carry
        return Samples(toks, lps, msk.astype(jnp.int32))

    return run


def _sharded(cache: KVCache) -> KVCache:
    return KVCache(*(shard(c, ("layers", "batch", "seq", "kv_heads", "head_dim")) for c in cache))
