"""A trained policy out of a run's work directory (or a Hugging Face checkpoint), for the
jobs that come after training: evaluation and export.

`load_policy(workdir=W)` reads the config the checkpoint was written with (its meta), builds
the model exactly as that run did (the base from `model.path` or the seed, LoRA adapters
attached) and restores only the policy's arrays: a partial restore of the checkpoint's
`['params']` entries, so neither the optimizer moments nor the EMA teacher are read (a 7B
run's checkpoint holds ~4x the policy's bytes).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Policy:
    model: object  # Qwen25VL with the trained weights
    tokenizer: object
    tokenizer_dir: str | None  # None: the project's tiny tokenizer
    config: object  # the run's ConfigDict (None for a bare HF checkpoint)
    step: int | None  # the checkpoint's step (None for a bare HF checkpoint)
    source: str  # what was loaded, for logs and summaries


def config_from_json(text):
    """A run's ConfigDict from its JSON (checkpoint meta, selector_config.json) laid over
    today's defaults, so a field added since the run was written has its default; JSON lists
    back to the tuples the schema uses."""
    from visd_jax.training.config import base_config

    def tuples(node):
        if isinstance(node, dict):
            return {k: tuples(v) for k, v in node.items()}
        return tuple(tuples(v) for v in node) if isinstance(node, list) else node

    def lay(dst, src):
        for k, v in src.items():
            if isinstance(v, dict) and k in dst and hasattr(dst[k], "items"):
                lay(dst[k], v)
            else:
                dst[k] = v

    cfg = base_config()
    with cfg.unlocked():
        lay(cfg, tuples(json.loads(text) if isinstance(text, str) else text))
    return cfg


def _restore_params(ckpt_dir, step: int, like: dict, frozen) -> dict:
    """{flat name: array} of the checkpoint's policy entries, in `like`'s shapes/shardings."""
    import jax
    import orbax.checkpoint as ocp

    path = os.path.join(ckpt_dir, str(step), "state")
    saved = ocp.PyTreeCheckpointer().metadata(path)
    saved = saved.item_metadata.tree if hasattr(saved, "item_metadata") else saved
    want = {k: v for k, v in like.items() if k.startswith("['params']") and (frozen is None or not frozen(k))}
    missing = sorted(set(want) - set(saved))
    if missing:
        raise ValueError(f"the checkpoint {path} lacks {len(missing)} policy arrays this config builds, e.g. "
                         f"{missing[:2]}: it was written by another model or layout")
    item = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=v.sharding) for k, v in want.items()}
    args = jax.tree.map(lambda s: ocp.ArrayRestoreArgs(sharding=s.sharding, dtype=s.dtype), item)
    return ocp.PyTreeCheckpointer().restore(path, args=ocp.args.PyTreeRestore(item=item, restore_args=args,
                                                                             partial_restore=True))


def load_policy(*, workdir: str | None = None, model_path: str | None = None, step: int | None = None,
                mesh=None, dtype: str | None = None, compute_dtype: str | None = None, expect_model=None,
                remat: bool | None = None, scan_layers: bool | None = None) -> Policy:
    """The policy of a training run (`workdir`: its newest checkpoint, or `step`) or of a
    Hugging Face checkpoint directory (`model_path`). `dtype` overrides the weights' dtype
    (`compute_dtype` the compute's, default `dtype`); `expect_model` (preset, path) is what
    the caller builds on: a run of another model is an error naming both. `remat` and
    `scan_layers` override the run's (a scanned run loads into a scanned model only)."""
    from flax import nnx

    from visd_jax.parallel import make_mesh
    from visd_jax.training.checkpoint import Checkpointer
    from visd_jax.training.config import base_config
    from visd_jax.training.setup import build_model, flat_state, frozen_path, unflat_state

    if (workdir is None) == (model_path is None):
        raise ValueError("give exactly one of workdir (a training run) or model_path (a Hugging Face checkpoint)")
    if model_path is not None:
        cfg = base_config()
        cfg.model.update(preset="", path=str(model_path), param_dtype=dtype or "float32", dtype=dtype or "float32")
        mesh = mesh or make_mesh({"data": 1, "fsdp": -1, "tensor": 1})
        model, tok, tok_dir = build_model(cfg, mesh)
        return Policy(model, tok, tok_dir, None, None, str(model_path))
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), every=1, async_save=False)
    steps = sorted(ckpt.all_steps())
    if not steps:
        raise FileNotFoundError(f"{workdir} has no checkpoint (looked in {ckpt.directory})")
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise FileNotFoundError(f"{workdir} has no checkpoint at step {step}; it has {steps}")
    meta = ckpt.meta(step)
    ckpt.close()
    if "config" not in meta:
        raise ValueError(f"the checkpoint at step {step} in {workdir} has no config in its meta")
    cfg = config_from_json(meta["config"])
    if expect_model is not None and (cfg.model.preset, cfg.model.path) != tuple(expect_model):
        raise ValueError(f"{workdir} trained model preset={cfg.model.preset!r} path={cfg.model.path!r}, but this "
                         f"config builds preset={expect_model[0]!r} path={expect_model[1]!r}: give the same model")
    if dtype:
        cfg.model.update(param_dtype=dtype, dtype=compute_dtype or dtype)
    if remat is not None:
        cfg.model.remat = remat
    if scan_layers is not None and scan_layers != cfg.model.scan_layers:
        raise ValueError(f"{workdir} was trained with model.scan_layers={cfg.model.scan_layers}: its checkpoint "
                         f"loads into that layout only")
    mesh = mesh or make_mesh({"data": 1, "fsdp": -1, "tensor": 1})
    model, tok, tok_dir = build_model(cfg, mesh)
    graphdef, params = nnx.split(model)
    like = flat_state({"params": params})
    restored = _restore_params(str(ckpt.directory), step, like, frozen_path(cfg))
    params = unflat_state({"params": params}, {**like, **restored})["params"]  # cast on restore
    log.info("loaded the policy of %s at step %d", workdir, step)
    return Policy(nnx.merge(graphdef, params), tok, tok_dir, cfg, step, f"{workdir}@{step}")
