"""Qwen2 decoder: grouped-query attention with M-RoPE, RMSNorm, SwiGLU; optional KV cache.

One code path serves training (no cache, causal over the sequence) and sampling (a
static-shape cache [L, B, S, G, K] written at `cache_index`). The attention mask is
`key_valid[b, s] and key_slot[s] <= query_slot[t]`: causal over slots plus padding.

`scan_layers=True` stores the L decoder layers' parameters stacked on a leading axis
(logical name "layers") and runs them with one `jax.lax.scan`, so the traced program and
compile time do not grow with depth; the scan counter is the layer index into the cache.
Numerically it is the same computation as the unrolled loop.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx import spmd

from visd_jax.models.config import TextConfig
from visd_jax.models.layers import Dense, RMSNorm, SwiGLU, apply_rope, attention, param
from visd_jax.models.rope import mrope_cos_sin
from visd_jax.parallel import shard


class KVCache(NamedTuple):
    """Keys/values of every layer: [L, B, S, G, K] each (static shape, filled in place)."""

    k: jax.Array
    v: jax.Array


class Attention(nnx.Module):
    def __init__(self, cfg: TextConfig, *, param_dtype, rngs: nnx.Rngs):
        d, h, g, k = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.h, self.g, self.k = h, g, k
        kw = dict(bias=True, param_dtype=param_dtype, rngs=rngs)
        self.q_proj = Dense(d, h * k, names=("embed", "heads"), **kw)
        self.k_proj = Dense(d, g * k, names=("embed", "kv_heads"), **kw)
        self.v_proj = Dense(d, g * k, names=("embed", "kv_heads"), **kw)
        self.o_proj = Dense(h * k, d, names=("heads", "embed"), bias=False, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x_BxTxD, cos, sin, allowed_BxTxS, kv=None, cache_index=None, layer=0):
        B, T, _ = x_BxTxD.shape
        q = self.q_proj(x_BxTxD).reshape(B, T, self.h, self.k)
        k = self.k_proj(x_BxTxD).reshape(B, T, self.g, self.k)
        v = self.v_proj(x_BxTxD).reshape(B, T, self.g, self.k)
        q = shard(apply_rope(q, cos, sin), ("batch", "seq", "heads", "head_dim"))
        k = shard(apply_rope(k, cos, sin), ("batch", "seq", "kv_heads", "head_dim"))
        v = shard(v, ("batch", "seq", "kv_heads", "head_dim"))
        if kv is not None:
            # Write only the T new slots of this layer into the whole [L, B, S, G, K] cache:
            # a dynamic_update_slice on a loop-carried buffer is done in place by XLA, so a
            # decode step moves O(new tokens), not O(cache), besides attention's read.
            k_all, v_all = kv
            at = (layer, 0, cache_index, 0, 0)
            k_all = jax.lax.dynamic_update_slice(k_all, k[None].astype(k_all.dtype), at)
            v_all = jax.lax.dynamic_update_slice(v_all, v[None].astype(v_all.dtype), at)
            kv = (k_all, v_all)
            k, v = k_all[layer].astype(q.dtype), v_all[layer].astype(q.dtype)
        out = attention(q, k, v, allowed_BxTxS)
        return self.o_proj(out.reshape(B, T, self.h * self.k)), kv


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: TextConfig, *, param_dtype, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, param_dtype=param_dtype)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, param_dtype=param_dtype)
        self.self_attn = Attention(cfg, param_dtype=param_dtype, rngs=rngs)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size, bias=False, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x, cos, sin, allowed, kv=None, cache_index=None, layer=0):
        a, kv = self.self_attn(self.input_layernorm(x), cos, sin, allowed, kv, cache_index, layer)
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x))
        return shard(x, ("batch", "seq", "embed")), kv


class TextModel(nnx.Module):
    def __init__(self, cfg: TextConfig, *, param_dtype, dtype, remat: bool, rngs: nnx.Rngs,
                 scan_layers: bool = False):
        self.cfg = cfg
        self.dtype = dtype
        self.remat = remat
        self.scan_layers = scan_layers
        self.embed_tokens = param(rngs, (cfg.vocab_size, cfg.hidden_size), param_dtype, ("vocab", "embed"))
        if scan_layers:
            self.layers = stacked_layers(cfg, param_dtype=param_dtype, rngs=rngs)
        else:
            self.layers = nnx.List(
                [DecoderLayer(cfg, param_dtype=param_dtype, rngs=rngs) for _ in range(cfg.num_hidden_layers)]
            )
        self.norm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, param_dtype=param_dtype)

    def embed(self, input_ids_BxT: jax.Array) -> jax.Array:
        emb = jnp.take(self.embed_tokens[...], input_ids_BxT, axis=0).astype(self.dtype)
        return shard(emb, ("batch", "seq", "embed"))

    def __call__(
        self,
        h_BxTxD: jax.Array,
        positions_3xBxT: jax.Array,
        key_valid_BxS: jax.Array | None,
        cache: KVCache | None = None,
        cache_index: jax.Array | int | None = None,
    ):
        """Final-normed hidden states [B, T, D] and the updated cache (None without one)."""
        cfg = self.cfg
        B, T, _ = h_BxTxD.shape
        cos, sin = mrope_cos_sin(positions_3xBxT, head_dim=cfg.head_dim, theta=cfg.rope_theta,
                                 mrope_section=cfg.mrope_section)
        if cache is None:
            S, q_slot = T, jnp.arange(T)
        else:
            S, q_slot = cache.k.shape[2], cache_index + jnp.arange(T)
        if key_valid_BxS is None:
            key_valid_BxS = jnp.ones((B, S), bool)
        allowed = key_valid_BxS.astype(bool)[:, None, :] & (jnp.arange(S)[None, None, :] <= q_slot[None, :, None])
        h = h_BxTxD.astype(self.dtype)
        kv = None if cache is None else (cache.k, cache.v)
        if self.scan_layers:
            h, kv = self._scan(h, cos, sin, allowed, kv, cache_index)
        else:
            for i, layer in enumerate(self.layers):
                # a pass with a KV cache is sampling: no backward pass to save memory for, and
                # nnx.remat inside the sampler's while_loop would write the outer trace's Params
                if self.remat and kv is None:
                    fn = nnx.remat(lambda lyr, x, kv, i=i: lyr(x, cos, sin, allowed, kv, cache_index, i))
                    h, kv = fn(layer, h, kv)
                else:
                    h, kv = layer(h, cos, sin, allowed, kv, cache_index, i)
        h = self.norm(h)
        return h, None if cache is None else KVCache(*kv)

    def _scan(self, h, cos, sin, allowed, kv, cache_index):
        """The stacked layers as one lax.scan over (layer index, that layer's parameters)."""
        graphdef, params = nnx.split(self.layers)
        # Inside the body a slice has lost the leading axis, so its sharding names must too
        # (on copies: split shares the model's own Variables).
        params = jax.tree.map(lambda v: v.copy(), params, is_leaf=lambda x: isinstance(x, nnx.Variable))
        params = spmd.remove_axis(params, 0, _LAYERS_AXIS)

        def body(carry, xs):
            h, kv = carry
            i, p = xs
            h, kv = nnx.merge(graphdef, p)(h, cos, sin, allowed, kv, cache_index, i)
            return (h, kv), None

        if self.remat:
            # prevent_cse=False is safe (and cheaper) under scan, as jax.checkpoint's docs say.
            body = jax.checkpoint(body, prevent_cse=False)
        (h, kv), _ = jax.lax.scan(body, (h, kv), (jnp.arange(self.cfg.num_hidden_layers), params))
        return h, kv


_LAYERS_AXIS = {nnx.PARTITION_NAME: "layers"}


def stacked_layers(cfg: TextConfig, *, param_dtype, rngs: nnx.Rngs) -> DecoderLayer:
    """One DecoderLayer whose every parameter has a leading [L] axis named "layers".

    Each layer gets its own key (split from `rngs.params()`), so the layers differ; the
    values are not those of the unscanned model for the same seed (a different key stream).
    """
    keys = jax.random.split(rngs.params(), cfg.num_hidden_layers)

    @nnx.vmap(in_axes=0, out_axes=0, transform_metadata=_LAYERS_AXIS)
    def make(key):
        return DecoderLayer(cfg, param_dtype=param_dtype, rngs=nnx.Rngs(params=key))

    return make(keys)


def init_cache(cfg: TextConfig, batch: int, max_len: int, dtype) -> KVCache:
    shape = (cfg.num_hidden_layers, batch, max_len, cfg.num_key_value_heads, cfg.head_dim)
    zeros = jnp.zeros(shape, dtype)
    return KVCache(zeros, zeros)
