"""Building a run's model, tokenizer and data source from its config; state <-> flat dict.

Checkpoints store the train state as a flat {path: array} dict: orbax restores plain dicts
of arrays into any sharding, whatever pytree classes (nnx.State, optax states) the live
state is made of.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from etils import epath

from visd_jax.models import Qwen25VL, Qwen25VLConfig
from visd_jax.models.hf_io import load_hf_checkpoint
from visd_jax.models.lora import LoraSpec, add_lora, has_lora, merge_lora
from visd_jax.models.canvas import CanvasBuckets
from visd_jax.pipeline import Buckets, ExampleConfig, StgrSource, TfdsSource
from visd_jax.text import has_tokenizer_files, load_tokenizer, special_ids
from visd_jax.training.batch import RunContext
from visd_jax.training.config import canvases_of


def build_model(cfg, mesh):
    """(model, tokenizer, tokenizer_dir) for `cfg.model`: a named preset with random weights
    and the project's tiny tokenizer, or a Hugging Face checkpoint directory and its own."""
    m = cfg.model
    param_dtype, dtype = getattr(jnp, m.param_dtype), getattr(jnp, m.dtype)
    if m.init_from:
        from visd_jax.training.policy import load_policy

        p = load_policy(workdir=m.init_from, mesh=mesh, dtype=m.param_dtype, compute_dtype=m.dtype,
                        expect_model=(m.preset, m.path), remat=m.remat, scan_layers=m.scan_layers)
        if has_lora(p.model):  # the run trained adapters: they are part of the policy we start from
            merge_lora(p.model)
        return _adapted(p.model, cfg, mesh), p.tokenizer, p.tokenizer_dir
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


@dataclasses.dataclass
class RunInputs:
    """How a run turns records into model inputs: the trainer, evaluation and the selector
    share it, so a policy is evaluated on exactly the inputs it was trained on."""

    ids: object  # text.SpecialIds of the tokenizer in use
    example_cfg: ExampleConfig
    token_buckets: tuple[int, ...]  # prompt widths
    buckets: Buckets  # the pipeline's (tokens, patches)
    sft_prompt_buckets: tuple[int, ...]
    max_patches: int
    vision: CanvasBuckets
    ctx: RunContext


def run_inputs(cfg, model_config, tokenizer, tok_dir, *, blocks_per_batch: int,
               prompt_tokens: int | None = None) -> RunInputs:
    """`cfg.data`'s example settings, buckets and canvases for a model and its tokenizer;
    `blocks_per_batch`: the most examples one batch holds (their vision blocks share canvases);
    `prompt_tokens`: a longer prompt budget than the run's, one bucket more (a benchmark's
    questions are longer than the training prompts the buckets were sized for)."""
    # every special id from the tokenizer in use (a checkpoint's: 151643..), stop ids from
    # its generation_config.json; im_end ends a chat turn (SFT targets, teacher marker)
    ids = special_ids(tokenizer, tok_dir)
    check_token_ids(model_config, ids, tok_dir)
    d = cfg.data
    example_cfg = ExampleConfig(fps=d.fps, min_frames=d.min_frames, max_frames=d.max_frames,
                                max_pixels=d.max_pixels, min_pixels=d.min_pixels, tokenizer_dir=tok_dir,
                                max_tokens=d.max_prompt_tokens, recipe=cfg.recipe,
                                image_min_pixels=d.image_min_pixels or None, image_max_pixels=d.image_max_pixels or None,
                                max_key_frames=d.max_key_frames)
    token_buckets = tuple(d.token_buckets) or tuple(
        b for b in (128, 256, 512, 1024, 2048, 4096, 8192, 16384) if b < d.max_prompt_tokens
    ) + (d.max_prompt_tokens,)
    while prompt_tokens and prompt_tokens > token_buckets[-1]:  # doubling: few compiles, little padding
        token_buckets += (min(2 * token_buckets[-1], int(prompt_tokens)),)
    # an example longer than the largest bucket is a bad record, not a batch that cannot be built
    example_cfg = dataclasses.replace(example_cfg, max_tokens=token_buckets[-1])
    # ours: a 2-frame patch per 196 pixels of a frame pair; release: each frame (and key
    # frame) an image of its own, twice the patches; images may have their own budget
    slots = example_cfg.frame_slots
    max_patches = max(slots * d.max_pixels, d.image_max_pixels) // (14 * 14) + 4 * slots
    # vision blocks of a batch padded into a few canvases: most blocks a batch can hold
    blocks = blocks_per_batch * slots
    vision = (CanvasBuckets.for_area(max(d.max_pixels, d.image_max_pixels) // (14 * 14), blocks,
                                     ratio=d.canvas_ratio) if not d.canvases else
              dataclasses.replace(CanvasBuckets.for_area(4, blocks), canvases=canvases_of(cfg)))
    ctx = RunContext.create(model_config, ids, token_buckets=token_buckets, vision=vision, tokenizer=tokenizer)
    return RunInputs(ids, example_cfg, token_buckets, Buckets(tokens=token_buckets, patches=(max_patches,)),
                     tuple(sorted(set(token_buckets) | {128, 256, 512, 1024, 2048})), max_patches, vision, ctx)


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
                           images=d.synthetic_images, difficulty=d.synthetic_difficulty)
        return StgrSource(ds.annotations, ds.video_root)
    if d.source == "stgr":
        return StgrSource(d.annotations, d.video_root or None, media_roots=d.media_roots or None,
                          keyframe_roots=d.keyframe_roots or None)
    return TfdsSource(d.tfds_name, split=d.split)


HELDOUT_SEED_OFFSET = 1000  # the synthetic held-out split: scenes under another seed


def heldout_synthetic(cfg, workdir):
    """The synthetic held-out set (`data.SynthDataset`): the training set's settings under
    another seed, `eval.examples` // 5 clips."""
    import data

    d = cfg.data
    cache = epath.Path(d.cache_dir) if d.cache_dir else epath.Path(workdir) / "data"
    return data.generate(str(cache), seed=d.synthetic_seed + HELDOUT_SEED_OFFSET,
                         num_clips=max(1, cfg.eval.examples // 5), images=d.synthetic_images,
                         difficulty=d.synthetic_difficulty)


def build_eval_data(cfg, workdir):
    """The evaluation records: the synthetic set under another seed (`eval.split` heldout),
    `eval.annotations` for STGR data (same video roots), or the TFDS split `eval.split`."""
    d, e = cfg.data, cfg.eval
    if d.source == "synthetic":
        if e.split != "heldout":
            raise ValueError(f"config.eval.split={e.split!r}: the synthetic set has the 'heldout' split only")
        ds = heldout_synthetic(cfg, workdir)
        return StgrSource(ds.annotations, ds.video_root)
    if d.source == "stgr":
        if not e.annotations:
            raise ValueError("config.eval.annotations: an STGR evaluation file is needed for STGR data")
        return StgrSource(e.annotations, d.video_root or None, media_roots=d.media_roots or None,
                          keyframe_roots=d.keyframe_roots or None)
    return TfdsSource(d.tfds_name, split=e.split)


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
