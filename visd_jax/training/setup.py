"""Building a run's model, tokenizer and data source from its config; state <-> flat dict.

Checkpoints store the train state as a flat {path: array} dict: orbax restores plain dicts
of arrays into any sharding, whatever pytree classes (nnx.State, optax states) the live
state is made of.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from etils import epath

from visd_jax.models import Qwen25VL, Qwen25VLConfig
from visd_jax.models.hf_io import load_hf_checkpoint
from visd_jax.models.lora import LoraSpec, add_lora
from visd_jax.pipeline import StgrSource, TfdsSource
from visd_jax.text import has_tokenizer_files, load_tokenizer


def build_model(cfg, mesh):
    """(model, tokenizer, tokenizer_dir) for `cfg.model`: a named preset with random weights
    and the project's tiny tokenizer, or a Hugging Face checkpoint directory and its own."""
    m = cfg.model
    param_dtype, dtype = getattr(jnp, m.param_dtype), getattr(jnp, m.dtype)
    if m.path:
        if not has_tokenizer_files(epath.Path(m.path)):
            raise FileNotFoundError(f"model.path {m.path} has no tokenizer files (tokenizer_config.json and "
                                    f"tokenizer.json): download them with the checkpoint")
        model = load_hf_checkpoint(m.path, mesh=mesh, dtype=param_dtype, compute_dtype=dtype, remat=m.remat,
                                   scan_layers=m.scan_layers)
        return _adapted(model, cfg, mesh), load_tokenizer(m.path), str(m.path)
    model = Qwen25VL.create(Qwen25VLConfig.preset(m.preset), mesh=mesh, seed=cfg.seed,
                            param_dtype=param_dtype, dtype=dtype, remat=m.remat, scan_layers=m.scan_layers)
    return _adapted(model, cfg, mesh), load_tokenizer(), None


def lora_spec(cfg) -> LoraSpec | None:
    """`cfg.model.lora` as a LoraSpec; None when rank is 0 (full fine-tuning)."""
    lo = cfg.model.lora
    if not lo.rank:
        return None
    return LoraSpec(rank=lo.rank, alpha=float(lo.alpha), targets=LoraSpec.parse_targets(lo.targets), vision=lo.vision)


def _adapted(model, cfg, mesh):
    spec = lora_spec(cfg)
    return model if spec is None else add_lora(model, spec, seed=cfg.seed + 7, mesh=mesh)


def frozen_path(cfg):
    """Predicate on flat-state names that are not trained (the base weights under LoRA): the
    checkpoint leaves them out, a restart rebuilds them from model.path or the seed; None
    when everything trains."""
    if lora_spec(cfg) is None:
        return None
    return lambda name: name.startswith(("['params']", "['teacher']")) and "['lora']" not in name


def check_token_ids(config, ids, where) -> None:
    """The model's media token ids (config.json) must be the tokenizer's: a mismatch would
    make every prompt's vision block invisible to the model."""
    pairs = {"image_token_id": ids.image_pad, "video_token_id": ids.video_pad,
             "vision_start_token_id": ids.vision_start, "vision_end_token_id": ids.vision_end}
    wrong = [f"{k}={getattr(config, k)} but the tokenizer has {v}" for k, v in pairs.items()
             if getattr(config, k) != v]
    if wrong:
        raise ValueError(f"the model config and the tokenizer{f' of {where}' if where else ''} disagree: "
                         + "; ".join(wrong))


def build_data(cfg, workdir):
    """The record source: the synthetic set (generated on demand, cached), STGR files, or TFDS."""
    d = cfg.data
    if d.source == "synthetic":
        import data

        cache = epath.Path(d.cache_dir) if d.cache_dir else epath.Path(workdir) / "data"
        ds = data.generate(str(cache), seed=d.synthetic_seed, num_clips=max(1, d.synthetic_examples // 5),
                           images=d.synthetic_images)
        return StgrSource(ds.annotations, ds.video_root)
    if d.source == "stgr":
        return StgrSource(d.annotations, d.video_root or None, media_roots=d.media_roots or None,
                          keyframe_roots=d.keyframe_roots or None)
    return TfdsSource(d.tfds_name, split=d.split)


def flat_state(state) -> dict:
    """{'params/model/...': array} for every array leaf of the train state."""
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def unflat_state(like, flat: dict):
    """The train state with the structure of `like` and the arrays of `flat`."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(like)
    missing = [jax.tree_util.keystr(p) for p, _ in paths if jax.tree_util.keystr(p) not in flat]
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} state arrays, e.g. {missing[:3]}")
    return jax.tree_util.tree_unflatten(treedef, [flat[jax.tree_util.keystr(p)] for p, _ in paths])
