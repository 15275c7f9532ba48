"""`Qwen25VL`: the policy model (vision tower + Qwen2 decoder) in flax.nnx.

Call signature mirrors transformers' `Qwen2_5_VLForConditionalGeneration`:
    model(input_ids, attention_mask=None, pixel_values_videos=None, video_grid_thw=None,
          second_per_grid_ts=None, return_hidden=False) -> logits [B, T, V] | hidden [B, T, D]
`video_grid_thw` must be concrete (numpy / list): it fixes the vision tower's shapes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from visd_jax.models.config import Qwen25VLConfig
from visd_jax.models.decoder import KVCache, TextModel, init_cache
from visd_jax.models.layers import param
from visd_jax.models.rope import get_rope_index
from visd_jax.models.vision import VisionTower
from visd_jax.parallel import logical_to_spec, shard

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _as_dtype(dtype):
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        return _DTYPES[dtype]
    if jnp.dtype(dtype) not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)):
        raise ValueError(f"dtype must be float32 or bfloat16, got {dtype}")
    return jnp.dtype(dtype).type


class Qwen25VL(nnx.Module):
    """Qwen2.5-VL. `param_dtype` stores weights, `dtype` computes (default: param_dtype);
    norms, rotary and softmax always run in float32. `scan_layers=True` stacks the decoder
    layers ([L, ...] parameters under `model.layers`, logical axis "layers") and runs them
    with one scan; the vision tower is never scanned (its blocks differ: window vs full)."""

    def __init__(self, config: Qwen25VLConfig, *, rngs: nnx.Rngs, param_dtype=jnp.float32,
                 dtype=None, remat: bool = False, scan_layers: bool = False):
        if not isinstance(config, Qwen25VLConfig):
            raise TypeError(f"config must be a Qwen25VLConfig, got {type(config).__name__}")
        param_dtype = _as_dtype(param_dtype)
        dtype = param_dtype if dtype is None else _as_dtype(dtype)
        self.config = config
        self.dtype = dtype
        self.visual = VisionTower(config.vision, param_dtype=param_dtype, dtype=dtype, remat=remat, rngs=rngs)
        self.model = TextModel(config.text, param_dtype=param_dtype, dtype=dtype, remat=remat, rngs=rngs,
                               scan_layers=scan_layers)
        if config.tie_word_embeddings:
            self.lm_head = None
        else:
            self.lm_head = param(rngs, (config.text.hidden_size, config.text.vocab_size), param_dtype,
                                 ("embed", "vocab"))

    # ------------------------------------------------------------------ pieces
    @property
    def unembed(self) -> jax.Array:
        """Output embedding [D, V] (the transposed input embedding when tied)."""
        if self.lm_head is None:
            return self.model.embed_tokens[...].T
        return self.lm_head[...]

    def logits(self, hidden_BxTxD: jax.Array) -> jax.Array:
        out = jnp.einsum("btd,dv->btv", hidden_BxTxD, self.unembed.astype(hidden_BxTxD.dtype))
        return shard(out, ("batch", "seq", "vocab"))

    def encode_video(self, pixel_values_videos: jax.Array, video_grid_thw) -> jax.Array:
        """Merged video tokens [sum_v T_v*H_v*W_v/4, D] in video order."""
        return self.visual(pixel_values_videos, video_grid_thw)

    def embed(self, input_ids_BxT: jax.Array, video_embeds_NxD: jax.Array | None = None) -> jax.Array:
        """Token embeddings with the video tokens' rows replaced by `video_embeds`, in order."""
        h = self.model.embed(input_ids_BxT)
        if video_embeds_NxD is None:
            return h
        is_vid = input_ids_BxT == self.config.video_token_id
        if not isinstance(input_ids_BxT, jax.core.Tracer):
            n = int(np.asarray(is_vid).sum())
            if n != video_embeds_NxD.shape[0]:
                raise ValueError(
                    f"input_ids hold {n} video tokens (id {self.config.video_token_id}) but the video "
                    f"gives {video_embeds_NxD.shape[0]} merged patches"
                )
        idx = jnp.cumsum(is_vid.reshape(-1)) - 1
        rows = jnp.take(video_embeds_NxD.astype(h.dtype), jnp.clip(idx, 0, video_embeds_NxD.shape[0] - 1), axis=0)
        return jnp.where(is_vid[..., None], rows.reshape(h.shape), h)

    def rope_index(self, input_ids_BxT, attention_mask_BxT=None, video_grid_thw=None, second_per_grid_ts=None):
        """M-RoPE positions [3, B, T] and decode deltas [B] (see rope.get_rope_index)."""
        v = self.config.vision
        return get_rope_index(
            input_ids_BxT, attention_mask_BxT, video_grid_thw, second_per_grid_ts,
            video_token_id=self.config.video_token_id, spatial_merge_size=v.spatial_merge_size,
            tokens_per_second=v.tokens_per_second,
        )

    def decode(self, h_BxTxD, positions_3xBxT, key_valid_BxS=None, cache: KVCache | None = None,
               cache_index=None):
        """Decoder over embeddings: (final hidden [B, T, D], updated cache)."""
        return self.model(h_BxTxD, positions_3xBxT, key_valid_BxS, cache, cache_index)

    def init_cache(self, batch: int, max_len: int, dtype=None) -> KVCache:
        return init_cache(self.config.text, batch, max_len, self.dtype if dtype is None else dtype)

    # ------------------------------------------------------------------ forward
    def __call__(self, input_ids, attention_mask=None, pixel_values_videos=None, video_grid_thw=None,
                 second_per_grid_ts=None, return_hidden: bool = False):
        input_ids = jnp.asarray(input_ids)
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
        if (pixel_values_videos is None) != (video_grid_thw is None):
            raise ValueError("pixel_values_videos and video_grid_thw must be given together")
        video = None
        if pixel_values_videos is not None:
            video = self.encode_video(jnp.asarray(pixel_values_videos), video_grid_thw)
        h = self.embed(input_ids, video)
        pos, _ = self.rope_index(input_ids, attention_mask, video_grid_thw, second_per_grid_ts)
        hidden, _ = self.decode(h, pos, attention_mask)
        return hidden if return_hidden else self.logits(hidden)

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, config: Qwen25VLConfig, *, mesh: Mesh | None = None, seed: int = 0,
               param_dtype=jnp.float32, dtype=None, remat: bool = False,
               scan_layers: bool = False) -> "Qwen25VL":
        """Randomly initialised model, every parameter created directly on its mesh shard.

        `scan_layers`: decoder layers stacked on a leading "layers" axis and run by one scan
        (compile time flat in depth); `remat`: each layer's activations recomputed in the
        backward pass (with scan, the scanned body is checkpointed).
        """
        def make():
            return cls(config, rngs=nnx.Rngs(seed), param_dtype=param_dtype, dtype=dtype, remat=remat,
                       scan_layers=scan_layers)

        with nnx.use_eager_sharding(False):
            if mesh is None:
                return make()
            abstract = nnx.eval_shape(make)
            graphdef, abs_state = nnx.split(abstract)
            shardings = param_shardings(abs_state, mesh)

            @jax.jit
            def init():
                return nnx.state(make())

            state = jax.jit(init, out_shardings=shardings)()
        return nnx.merge(graphdef, state)


def param_shardings(state: nnx.State, mesh: Mesh):
    """NamedSharding per variable from its logical names, through the one RULES table."""

    def one(v):
        names = v.get_metadata().get("out_sharding") if isinstance(v, nnx.Variable) else None
        shape = v.shape if hasattr(v, "shape") else v.get_value().shape
        if not names:
            return NamedSharding(mesh, logical_to_spec([None] * len(shape)))
        return NamedSharding(mesh, logical_to_spec(names, mesh=mesh, shape=shape))

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))
