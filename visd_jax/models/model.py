"""`Qwen25VL`: the policy model (vision tower + Qwen2 decoder) in flax.nnx.

Call signature mirrors transformers' `Qwen2_5_VLForConditionalGeneration`:
    model(input_ids, attention_mask=None, pixel_values_videos=None, video_grid_thw=None,
          second_per_grid_ts=None, return_hidden=False, *, pixel_values=None,
          image_grid_thw=None) -> logits [B, T, V] | hidden [B, T, D]
`video_grid_thw` / `image_grid_thw` must be concrete (numpy / list / tuples): they fix the
vision tower's shapes. Images and videos go through the same tower, separately (attention
never crosses a frame, so this equals one joint pass); their merged tokens replace the
`<|image_pad|>` / `<|video_pad|>` positions in token order, images and videos each numbered
row-major over the batch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from visd_jax.models.canvas import Media
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

    def encode_image(self, pixel_values: jax.Array, image_grid_thw) -> jax.Array:
        """Merged image tokens [sum_i H_i*W_i/4, D] in image order (each image one frame pair)."""
        grid = np.asarray(image_grid_thw, np.int64).reshape(-1, 3)
        need = (int(np.prod(grid, axis=1).sum()), self.config.vision.patch_dim)
        if pixel_values.ndim != 2 or tuple(pixel_values.shape) != need:
            raise ValueError(f"pixel_values has shape {tuple(pixel_values.shape)}; image_grid_thw "
                             f"{grid.tolist()} needs {need}")
        return self.visual(pixel_values, grid)

    def embed(self, input_ids_BxT: jax.Array, video_embeds_NxD: jax.Array | None = None, *,
              image_embeds_NxD: jax.Array | None = None, media_ids_BxT: jax.Array | None = None) -> jax.Array:
        """Token embeddings with the video (image) tokens' rows replaced by `video_embeds`
        (`image_embeds`), each in token order over the flattened batch. `media_ids` (default:
        the input ids) says where media tokens are (see `media_ids`)."""
        h = self.model.embed(input_ids_BxT)
        where = input_ids_BxT if media_ids_BxT is None else media_ids_BxT
        for embeds, token_id, what in ((image_embeds_NxD, self.config.image_token_id, "image"),
                                       (video_embeds_NxD, self.config.video_token_id, "video")):
            if embeds is not None:
                h = _place(h, where, embeds, token_id, what)
        return h

    def encode_media(self, media: Media) -> jax.Array:
        """Merged tokens of every canvas slot, flattened: [M * H*W / merge^2, D] (`models.canvas`)."""
        out = self.visual.encode_canvas(media.pixels, media.valid, media.canvas)
        return out.reshape(-1, out.shape[-1])

    def embed_media(self, input_ids_BxT: jax.Array, media_embeds_NxD: jax.Array | None,
                    src_BxT: jax.Array | None) -> jax.Array:
        """Token embeddings with each position whose src >= 0 taking merged canvas token src."""
        h = self.model.embed(input_ids_BxT)
        if media_embeds_NxD is None:
            return h
        rows = jnp.take(media_embeds_NxD.astype(h.dtype), jnp.maximum(src_BxT, 0), axis=0)
        return jnp.where((src_BxT >= 0)[..., None], rows, h)

    def forward_packed(self, input_ids_BxT, attention_mask_BxT, positions_3xBxT, media: Media | None = None,
                       src_BxT=None, return_hidden: bool = False):
        """The forward pass on bucketed media: `media` in canvases, and the host-computed
        `positions` and `src` of `canvas.token_layout` (no grid is static here: the program
        depends only on the shapes, so it compiles once per bucket)."""
        if (media is None) != (src_BxT is None):
            raise ValueError("media and src must be given together")
        embeds = None if media is None else self.encode_media(media)
        h = self.embed_media(jnp.asarray(input_ids_BxT), embeds, None if src_BxT is None else jnp.asarray(src_BxT))
        hidden, _ = self.decode(h, jnp.asarray(positions_3xBxT), attention_mask_BxT)
        return hidden if return_hidden else self.logits(hidden)

    def rope_index(self, input_ids_BxT, attention_mask_BxT=None, video_grid_thw=None, second_per_grid_ts=None,
                   *, image_grid_thw=None):
        """M-RoPE positions [3, B, T] and decode deltas [B] (see rope.get_rope_index)."""
        v = self.config.vision
        return get_rope_index(
            input_ids_BxT, attention_mask_BxT, video_grid_thw, second_per_grid_ts,
            video_token_id=self.config.video_token_id, spatial_merge_size=v.spatial_merge_size,
            tokens_per_second=v.tokens_per_second, image_grid_thw=image_grid_thw,
            image_token_id=self.config.image_token_id,
        )

    def decode(self, h_BxTxD, positions_3xBxT, key_valid_BxS=None, cache: KVCache | None = None,
               cache_index=None):
        """Decoder over embeddings: (final hidden [B, T, D], updated cache)."""
        return self.model(h_BxTxD, positions_3xBxT, key_valid_BxS, cache, cache_index)

    def init_cache(self, batch: int, max_len: int, dtype=None) -> KVCache:
        return init_cache(self.config.text, batch, max_len, self.dtype if dtype is None else dtype)

    # ------------------------------------------------------------------ forward
    def __call__(self, input_ids, attention_mask=None, pixel_values_videos=None, video_grid_thw=None,
                 second_per_grid_ts=None, return_hidden: bool = False, *, pixel_values=None,
                 image_grid_thw=None, media_end: int | None = None):
        """`media_end` (static): only positions before it may hold media tokens, e.g. the
        prompt width of prompt + completion rows; a vision token the policy wrote after it
        is embedded as the text token it is and moves no media, in its row or any other."""
        input_ids = jnp.asarray(input_ids)
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
        ids = input_ids
        input_ids = media_ids(input_ids, media_end)
        if (pixel_values_videos is None) != (video_grid_thw is None):
            raise ValueError("pixel_values_videos and video_grid_thw must be given together")
        if (pixel_values is None) != (image_grid_thw is None):
            raise ValueError("pixel_values and image_grid_thw must be given together")
        if not isinstance(input_ids, jax.core.Tracer):  # fail before the vision tower runs
            for grid, token_id, what in ((image_grid_thw, self.config.image_token_id, "image"),
                                         (video_grid_thw, self.config.video_token_id, "video")):
                n, want = media_token_counts(input_ids, token_id, grid, self.config.vision.spatial_merge_size)
                if grid is not None and n != want:
                    raise ValueError(f"input_ids hold {n} {what} tokens (id {token_id}) but the {what} "
                                     f"grids give {want} merged patches")
                runs = media_runs(input_ids, token_id)
                if grid is not None and runs != len(np.asarray(grid).reshape(-1, 3)):
                    # M-RoPE takes one grid per block: a whole-video grid over several blocks
                    # would reuse the last grid without a word
                    raise ValueError(f"input_ids hold {runs} {what} blocks but {what}_grid_thw has "
                                     f"{len(np.asarray(grid).reshape(-1, 3))} rows: give one grid per block")
        video = image = None
        if pixel_values_videos is not None:
            video = self.encode_video(jnp.asarray(pixel_values_videos), video_grid_thw)
        if pixel_values is not None:
            image = self.encode_image(jnp.asarray(pixel_values), image_grid_thw)
        h = self.embed(ids, video, image_embeds_NxD=image, media_ids_BxT=input_ids)
        pos, _ = self.rope_index(input_ids, attention_mask, video_grid_thw, second_per_grid_ts,
                                 image_grid_thw=image_grid_thw)
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


def abstract_params(config: Qwen25VLConfig, mesh: Mesh, *, param_dtype=jnp.float32, dtype=None,
                    remat: bool = False, scan_layers: bool = False, lora=None):
    """(graphdef, params): the model's parameters as `jax.ShapeDtypeStruct`s carrying their
    mesh shardings, and not one byte of weights (tpu/compile.py lowers programs on them);
    `lora` (a `models.lora.LoraSpec`) adds its adapters."""
    def make():
        model = Qwen25VL(config, rngs=nnx.Rngs(0), param_dtype=param_dtype, dtype=dtype, remat=remat,
                         scan_layers=scan_layers)
        if lora is not None:
            from visd_jax.models.lora import add_lora

            add_lora(model, lora)
        return model

    with nnx.use_eager_sharding(False):
        graphdef, state = nnx.split(nnx.eval_shape(make))
    is_var = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    return graphdef, jax.tree.map(lambda v, s: v.replace(jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s)),
                                  state, param_shardings(state, mesh), is_leaf=is_var)


def param_shardings(state: nnx.State, mesh: Mesh):
    """NamedSharding per variable from its logical names, through the one RULES table."""

    def one(v):
        names = v.get_metadata().get("out_sharding") if isinstance(v, nnx.Variable) else None
        shape = v.shape if hasattr(v, "shape") else v.get_value().shape
        if not names:
            return NamedSharding(mesh, logical_to_spec([None] * len(shape)))
        return NamedSharding(mesh, logical_to_spec(names, mesh=mesh, shape=shape))

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def media_ids(ids_BxT, media_end: int | None):
    """`ids` with every position from `media_end` on set to -1 (no token), so that placing
    media and M-RoPE, which find media by token id, look at the prompt only."""
    if media_end is None:
        return ids_BxT
    keep = np.arange(ids_BxT.shape[1]) < media_end
    return jnp.where(keep[None, :], ids_BxT, -1) if isinstance(ids_BxT, jax.Array) else np.where(
        keep[None, :], ids_BxT, -1)


def media_runs(ids_BxT, token_id: int) -> int:
    """Maximal runs of `token_id` in concrete ids, over all rows (one per vision block)."""
    is_tok = np.asarray(ids_BxT) == token_id
    return int((is_tok & ~np.pad(is_tok, ((0, 0), (1, 0)))[:, :-1]).sum())


def media_token_counts(input_ids, token_id: int, grid, merge: int) -> tuple[int, int]:
    """(placeholder tokens of `token_id` in concrete `input_ids`, merged patches the grids
    [N, 3] give; 0 for no grid): equal in a well-formed call."""
    n = int(np.asarray(input_ids == token_id).sum())
    want = 0 if grid is None else int(np.prod(np.asarray(grid).reshape(-1, 3), axis=1).sum()) // (merge * merge)
    return n, want


def _place(h_BxTxD, ids_BxT, embeds_NxD, token_id: int, what: str):
    """Rows of `h` at `token_id` replaced by `embeds`, in flattened-batch token order."""
    is_tok = ids_BxT == token_id
    if not isinstance(ids_BxT, jax.core.Tracer):
        n = int(np.asarray(is_tok).sum())
        if n != embeds_NxD.shape[0]:
            raise ValueError(
                f"input_ids hold {n} {what} tokens (id {token_id}) but the {what} grids give "
                f"{embeds_NxD.shape[0]} merged patches"
            )
    idx = jnp.cumsum(is_tok.reshape(-1)) - 1
    rows = jnp.take(embeds_NxD.astype(h_BxTxD.dtype), jnp.clip(idx, 0, embeds_NxD.shape[0] - 1), axis=0)
    return jnp.where(is_tok[..., None], rows.reshape(h_BxTxD.shape), h_BxTxD)
