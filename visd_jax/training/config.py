"""The trainer's config: one schema, validated at start-up with the offending field named.

Experiments (`experiments/*.py`) build an `ml_collections.ConfigDict` from `base_config()`
and override fields; `validate` runs before anything touches a device, so a bad value on
the command line is an error in the first second, never deep inside a jitted step.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from visd_jax.prompt_kinds import KINDS as SELECTOR_KINDS
from visd_jax.training.routing import CANDIDATE_RULES, SD_WEIGHTINGS

MODES = ("sft", "gspo", "visioncoach", "visd", "visd_coach")
COACH_MODES = ("visioncoach", "visd_coach")  # VisionCoach: hard prompts coached, SD rows
VISD_MODES = ("visd", "visd_coach")  # VISD: judge, EMA teacher, token-level signal
# models.config's preset names, listed here so validation imports no JAX (a test keeps the two equal)
PRESETS = ("3b", "7b", "32b", "tiny", "small")


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.workdir = "workdir/visd_v5e_local"
    c.mode = "visd_coach"
    # what the model is fed: "ours" (a vision block per 2-frame patch) or "release" (each frame
    # an image block with the VisionCoach / Open-o3 Video trainer's captions, prompts, hints)
    c.recipe = "ours"

    c.mesh = dict(data=-1, fsdp=1, tensor=1, axis_types="auto")
    # param_dtype stores the weights the optimizer updates (float32 master weights with a
    # bfloat16 `dtype` is mixed precision); mu_dtype stores Adam's first moment ("" = param_dtype)
    # lora: rank 0 trains every weight; rank > 0 trains only adapters on `targets` ("attention",
    # "mlp" or projection names, comma-separated; `vision` adds the vision tower's), the base frozen
    c.model = dict(preset="tiny", path="", param_dtype="float32", dtype="float32", remat=False,
                   scan_layers=False, mu_dtype="",
                   lora=dict(rank=0, alpha=16.0, targets="attention,mlp", vision=False),
                   # a training run's work directory: start from its newest checkpoint's policy
                   # (the model it was built with must be this config's preset or path)
                   init_from="")
    c.data = dict(
        source="synthetic",        # synthetic | stgr | tfds
        annotations="", video_root="", tfds_name="", split="train",
        # release records (video_path / image_path, key_frames[].path): roots by `source`, as
        # "STR=dir,STR_plm=dir2,gqa=dir3" or one directory; relative ones under video_root
        media_roots="", keyframe_roots="",
        # synthetic_images: add the set's visual-QA image records (one per clip)
        # synthetic_difficulty: 0 (the set as it always was), 1, 2: harder scenes (data/scenes.py)
        synthetic_examples=64, synthetic_seed=0, cache_dir="", synthetic_images=False, synthetic_difficulty=0,
        order_seed=-1,  # the shuffle's seed; -1: the run's seed
        fps=2.0, min_frames=4, max_frames=8, max_pixels=128 * 28 * 28, min_pixels=4 * 28 * 28,
        num_workers=0, bad_records="skip", max_prompt_tokens=16384,
        # stop (with the reasons) once more than this share of the records read were bad
        max_bad_fraction=0.5,
        # 0: the video budget; the release: 3136 .. 200704 for images
        image_min_pixels=0, image_max_pixels=0,
        max_key_frames=8,  # release recipe: key-frame images a video may add
        # prompt-length buckets (each one a compiled program); () = powers of two up to max
        token_buckets=(),
        # vision-block canvases "HxW" in patches (each one a compiled program per slot count);
        # () = derived from the pixel budget: every aspect within 1:5..5:1, each canvas at
        # most ~canvas_ratio times the block it holds (models/canvas.py)
        canvases=(), canvas_ratio=1.5,
    )
    # max_claims 0: every claim. prompted_frac / privileged_frac: share of SFT steps whose
    # batch shows the visual-prompt form / the teacher's privileged form (training/sft.py)
    c.sft = dict(steps=0, batch_size=8, lr=1e-4, warmup_steps=0, max_claims=0, prompted_frac=0.0,
                 privileged_frac=0.0, weight_decay=0.01, grad_clip=5.0)
    c.rl = dict(
        steps=100, prompts_per_step=8, num_generations=4, minibatches=4,
        max_new_tokens=768, temperature=1.0, top_p=0.95, top_k=0,
        lr=1e-6, warmup_steps=0, weight_decay=0.01, grad_clip=5.0,
        clip_low=3e-4, clip_high=4e-4, adv_eps=1e-4,
        # KL to a frozen reference copy of the policy RL starts from (k3 per token, TRL's);
        # the VisionCoach release trains with 0.04, VISD and GSPO's paper with none
        ref_kl_beta=0.0,
    )
    # candidate_rule: ans_acc (release) | answer_sum | total (training/routing.py);
    # sd_weighting: prompt (release: alpha / prompts per hard prompt) | row (alpha, mean over S)
    c.coach = dict(hard_threshold=2.21, alpha=0.1, selector="fixed:darken", top_n=2,
                   candidate_rule="ans_acc", sd_weighting="prompt")
    c.visd = dict(ema_decay=0.99, signal_mode="topk", top_k=16, gamma=0.0, clip=0.2,
                  lambda_start=0.5, lambda_steps=600,
                  # the EMA teacher's storage ("" = model.param_dtype); bfloat16 cannot follow a
                  # student at lr ~1e-6 (its 1% steps round away): see training/step.init_state
                  teacher_dtype="",
                  # judge: annotation (offline, deterministic) | model (a Qwen2.5-VL checkpoint at
                  # judge_path reads the rubric; empty path: the policy judges itself)
                  judge="annotation", judge_path="", judge_max_new_tokens=256, judge_max_prompt_tokens=2048)
    # held-out evaluation (visd_jax/eval/run.py): every N steps in training (0: never) and the
    # `python -m experiments.evaluate` job. split "heldout": the synthetic set under another
    # seed, never trained on; for STGR data `annotations` names the evaluation file; TFDS: a split
    # V-STaR (visd_jax/eval/vstar_chain.py, the evaluation job only): vstar "" (off), "synthetic"
    # (the held-out clips as V-STaR items) or the benchmark's annotation file, its videos under
    # vstar_videos; judge of its answers: "match" (offline word match), "policy", or a checkpoint
    c.eval = dict(every=0, split="heldout", annotations="", examples=20, batch_size=5, max_new_tokens=0,
                  temperature=0.0, top_p=1.0, vstar="", vstar_videos="", vstar_items=0, judge="match",
                  vstar_boxes="rescale")  # boxes to video pixels; "release": as its script scores
    c.checkpoint = dict(every=50, keep=3, async_save=True)
    # wandb: "" (off), "offline" (files under workdir/wandb, no network) or "online"
    c.log = dict(every=1, tensorboard=True, progress=True, wandb="", wandb_project="visd-jax")
    # a restart whose config differs from the checkpoint's in a field that changes the run's
    # meaning (MEANINGFUL) is refused unless this is set; other differences are logged
    c.resume = dict(allow_changes=False)
    return c


# Fields whose change makes a resumed run a different run: its data, model, seed, prompt
# recipe, step sizes and sampling. Total steps, mode, logging, checkpointing are not.
MEANINGFUL = ("seed", "recipe", "model.", "data.", "sft.lr", "sft.batch_size", "rl.lr", "rl.prompts_per_step",
              "rl.num_generations", "rl.temperature", "rl.top_p", "rl.top_k", "rl.max_new_tokens",
              "rl.ref_kl_beta")
_NOT_MEANINGFUL = ("data.num_workers", "data.cache_dir", "data.canvases", "data.canvas_ratio")


def _flat(node, prefix=""):
    out = {}
    for k, v in node.items():
        if hasattr(v, "items"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = list(v) if isinstance(v, tuple) else v
    return out


def config_changes(saved: Mapping, now) -> tuple[list[str], list[str]]:
    """(meaningful, other) differences `field: saved -> now` between a checkpoint's config
    and this run's; the work directory and resume settings are never compared."""
    a, b = _flat(saved), _flat(now)
    # a field added since the checkpoint was written, at its default, changes nothing
    defaults = _flat(base_config())
    a.update({k: v for k, v in b.items() if k not in a and k in defaults and defaults[k] == v})
    meaningful, other = [], []
    for k in sorted(set(a) | set(b)):
        if k == "workdir" or k.startswith("resume.") or a.get(k) == b.get(k):
            continue
        line = f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
        big = any(k == m or (m.endswith(".") and k.startswith(m)) for m in MEANINGFUL) and k not in _NOT_MEANINGFUL
        (meaningful if big else other).append(line)
    return meaningful, other


def _check(cond: bool, field: str, value: Any, need: str) -> None:
    if not cond:
        raise ValueError(f"config.{field}={value!r}: {need}")


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _nonneg(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


def _roots_ok(v) -> bool:
    from visd_jax.roots import parse_roots

    try:
        parse_roots(v)
    except ValueError:
        return False
    return True


def _lora_targets_ok(v) -> bool:
    from visd_jax.lora_targets import parse_targets

    try:
        return isinstance(v, str) and bool(parse_targets(v))
    except ValueError:
        return False


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bool(v) -> bool:
    return isinstance(v, bool)


def _mesh_axis(v) -> bool:
    return _int(v) and (v == -1 or v >= 1)


def _canvas_ok(c) -> bool:
    parts = c.split("x") if isinstance(c, str) else []
    return len(parts) == 2 and all(p.isdigit() and int(p) > 0 and int(p) % 2 == 0 for p in parts)


def canvases_of(cfg) -> tuple[tuple[int, int], ...]:
    """data.canvases as (H, W) pairs ('16x24' -> (16, 24))."""
    return tuple(tuple(int(p) for p in c.split("x")) for c in cfg.data.canvases)


_RULES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("seed", _int, "an int"),
    ("workdir", lambda v: isinstance(v, str), "a path (gs://... on TPU)"),
    ("mode", lambda v: v in MODES, f"one of {MODES}"),
    ("mesh.data", _mesh_axis, "-1 (the remaining devices) or a positive int"),
    ("mesh.fsdp", _mesh_axis, "-1 (the remaining devices) or a positive int"),
    ("mesh.tensor", _mesh_axis, "-1 (the remaining devices) or a positive int"),
    ("mesh.axis_types", lambda v: v in ("auto", "explicit"), "auto or explicit"),
    ("model.preset", lambda v: v == "" or v in PRESETS, f"'' or one of {PRESETS}"),
    ("model.path", lambda v: isinstance(v, str), "a Hugging Face checkpoint directory or ''"),
    ("model.init_from", lambda v: isinstance(v, str), "a training run's work directory or ''"),
    ("model.remat", _bool, "true or false"),
    ("model.scan_layers", _bool, "true or false"),
    ("model.lora.rank", lambda v: _int(v) and v >= 0, "an int >= 0 (0: no LoRA, every weight trains)"),
    ("model.lora.alpha", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
     "a positive number (the adapter's scale is alpha / rank)"),
    ("model.lora.targets", _lora_targets_ok, "comma-separated 'attention', 'mlp' or decoder projection names "
     "(q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"),
    ("model.lora.vision", _bool, "true or false"),
    ("data.annotations", lambda v: isinstance(v, str), "a path or ''"),
    ("data.video_root", lambda v: isinstance(v, str), "a path or ''"),
    ("data.tfds_name", lambda v: isinstance(v, str), "a TFDS name or ''"),
    ("data.split", lambda v: isinstance(v, str) and bool(v), "a split name"),
    ("data.cache_dir", lambda v: isinstance(v, str), "a path or ''"),
    ("data.synthetic_images", _bool, "true or false"),
    ("data.synthetic_seed", _int, "an int"),
    ("data.order_seed", lambda v: _int(v) and v >= -1, "an int >= -1 (-1: the run's seed)"),
    ("data.synthetic_difficulty", lambda v: v in (0, 1, 2) and not isinstance(v, bool), "0, 1 or 2"),
    ("sft.warmup_steps", lambda v: _int(v) and v >= 0, "an int >= 0"),
    ("rl.warmup_steps", lambda v: _int(v) and v >= 0, "an int >= 0"),
    ("rl.weight_decay", _nonneg, "a number >= 0"),
    ("sft.weight_decay", _nonneg, "a number >= 0"),
    ("sft.grad_clip", lambda v: isinstance(v, (int, float)) and v > 0, "a positive number"),
    ("rl.adv_eps", lambda v: isinstance(v, (int, float)) and v > 0, "a positive number"),
    ("coach.hard_threshold", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    ("visd.judge_path", lambda v: isinstance(v, str), "a Hugging Face checkpoint directory or ''"),
    ("checkpoint.async_save", _bool, "true or false"),
    ("log.progress", _bool, "true or false"),
    ("log.tensorboard", _bool, "true or false"),
    ("log.wandb", lambda v: v in ("", "offline", "online") and (not v or _installed("wandb")),
     "'' (off), 'offline' or 'online', with wandb installed (pip install wandb)"),
    ("log.wandb_project", lambda v: isinstance(v, str) and bool(v), "a W&B project name"),
    ("recipe", lambda v: v in ("ours", "release"), "ours or release"),
    ("data.image_min_pixels", lambda v: isinstance(v, int) and v >= 0, "an int >= 0 (0 = data.min_pixels)"),
    ("data.image_max_pixels", lambda v: isinstance(v, int) and v >= 0, "an int >= 0 (0 = data.max_pixels)"),
    ("data.max_key_frames", lambda v: isinstance(v, int) and v >= 0, "an int >= 0"),
    ("model.param_dtype", lambda v: v in ("float32", "bfloat16"), "float32 or bfloat16"),
    ("model.dtype", lambda v: v in ("float32", "bfloat16"), "float32 or bfloat16"),
    ("model.mu_dtype", lambda v: v in ("", "float32", "bfloat16"), "empty (the param dtype), float32 or bfloat16"),
    ("visd.teacher_dtype", lambda v: v in ("", "float32", "bfloat16"), "empty (the param dtype), float32 or bfloat16"),
    ("data.source", lambda v: v in ("synthetic", "stgr", "tfds"), "synthetic, stgr or tfds"),
    ("data.bad_records", lambda v: v in ("skip", "raise"), "skip or raise"),
    ("data.fps", lambda v: isinstance(v, (int, float)) and v > 0, "a positive number"),
    ("data.min_frames", lambda v: _positive_int(v) and v >= 2, "an int >= 2 (one temporal patch)"),
    ("data.max_frames", lambda v: _positive_int(v) and v % 2 == 0, "a positive even int (2-frame patches)"),
    ("data.min_pixels", lambda v: isinstance(v, int) and v >= 28 * 28, "an int >= 784 (one 28x28 merge block)"),
    ("data.max_pixels", lambda v: isinstance(v, int) and v >= 28 * 28, "an int >= 784 (one 28x28 merge block)"),
    ("data.max_prompt_tokens", _positive_int, "a positive int"),
    ("data.synthetic_examples", _positive_int, "a positive int"),
    ("data.num_workers", lambda v: isinstance(v, int) and v >= 0, "an int >= 0"),
    ("data.max_bad_fraction", lambda v: isinstance(v, (int, float)) and 0 <= v <= 1, "in [0, 1]"),
    ("data.media_roots", lambda v: isinstance(v, (str, dict)) and _roots_ok(v), "source=dir,... or one directory"),
    ("data.keyframe_roots", lambda v: isinstance(v, (str, dict)) and _roots_ok(v), "source=dir,... or one directory"),
    ("data.token_buckets", lambda v: isinstance(v, tuple) and all(isinstance(b, int) and b > 0 for b in v)
     and list(v) == sorted(set(v)), "increasing positive ints, or () for powers of two"),
    ("data.canvases", lambda v: isinstance(v, tuple) and all(_canvas_ok(c) for c in v),
     "'HxW' canvases in patches, H and W even (e.g. ('16x24', '24x16')), or () to derive them"),
    ("data.canvas_ratio", lambda v: isinstance(v, (int, float)) and v > 1, "a number > 1"),
    ("sft.steps", lambda v: isinstance(v, int) and v >= 0, "an int >= 0"),
    ("sft.batch_size", _positive_int, "a positive int"),
    ("sft.max_claims", lambda v: isinstance(v, int) and v >= 0, "an int >= 0 (0 = every claim)"),
    ("sft.prompted_frac", lambda v: isinstance(v, (int, float)) and 0 <= v <= 1, "in [0, 1]"),
    ("sft.privileged_frac", lambda v: isinstance(v, (int, float)) and 0 <= v <= 1, "in [0, 1]"),
    ("sft.lr", lambda v: isinstance(v, (int, float)) and v > 0, "a positive number"),
    ("rl.steps", lambda v: isinstance(v, int) and v >= 0, "an int >= 0"),
    ("rl.prompts_per_step", _positive_int, "a positive int"),
    ("rl.num_generations", lambda v: _positive_int(v) and v >= 2, "an int >= 2 (advantages need a group)"),
    ("rl.minibatches", _positive_int, "a positive int"),
    ("rl.max_new_tokens", _positive_int, "a positive int"),
    ("rl.temperature", lambda v: isinstance(v, (int, float)) and v > 0, "a positive number"),
    ("rl.top_p", lambda v: isinstance(v, (int, float)) and 0 < v <= 1, "in (0, 1]"),
    ("rl.top_k", lambda v: isinstance(v, int) and v >= 0, "an int >= 0 (0 = off)"),
    ("rl.lr", lambda v: isinstance(v, (int, float)) and v > 0, "a positive number"),
    ("rl.grad_clip", lambda v: isinstance(v, (int, float)) and v > 0, "a positive number"),
    ("rl.clip_low", lambda v: isinstance(v, (int, float)) and 0 <= v < 1, "in [0, 1)"),
    ("rl.clip_high", _nonneg, "a number >= 0"),
    ("coach.alpha", _nonneg, "a number >= 0"),
    ("coach.top_n", lambda v: isinstance(v, int) and v >= 0, "an int >= 0"),
    ("coach.candidate_rule", lambda v: v in CANDIDATE_RULES, f"one of {CANDIDATE_RULES} (ans_acc: the release)"),
    ("coach.sd_weighting", lambda v: v in SD_WEIGHTINGS, f"one of {SD_WEIGHTINGS} (prompt: the release)"),
    ("rl.ref_kl_beta", _nonneg, "a number >= 0 (0: no reference model is kept)"),
    # the one list of kinds (raw included: fixed:raw re-rolls hard prompts as they are)
    ("coach.selector", lambda v: v == "oracle" or (isinstance(v, str) and (
        (v.startswith("fixed:") and v[6:] in SELECTOR_KINDS) or (v.startswith(("cached:", "learned:"))
                                                                 and len(v.split(":", 1)[1]) > 0))),
     f"'oracle', 'fixed:KIND' with KIND in {SELECTOR_KINDS}, 'cached:FILE' (prediction cache) or "
     f"'learned:DIR' (a python -m experiments.vp_selector run)"),
    ("visd.ema_decay", lambda v: isinstance(v, (int, float)) and 0 <= v <= 1, "in [0, 1]"),
    ("visd.signal_mode", lambda v: v in ("topk", "sampled"), "topk or sampled"),
    ("visd.top_k", _positive_int, "a positive int"),
    ("visd.gamma", lambda v: isinstance(v, (int, float)) and 0 <= v <= 1, "in [0, 1]"),
    ("visd.clip", lambda v: isinstance(v, (int, float)) and 0 <= v < 1, "in [0, 1)"),
    ("visd.lambda_start", lambda v: isinstance(v, (int, float)) and 0 <= v <= 1, "in [0, 1]"),
    ("visd.lambda_steps", lambda v: isinstance(v, int) and v >= 0, "an int >= 0"),
    ("visd.judge", lambda v: v in ("annotation", "model"), "annotation or model"),
    ("visd.judge_max_new_tokens", _positive_int, "a positive int"),
    ("visd.judge_max_prompt_tokens", lambda v: _positive_int(v) and v >= 64, "an int >= 64"),
    ("eval.every", lambda v: _int(v) and v >= 0, "an int >= 0 (0: no evaluation during training)"),
    ("eval.split", lambda v: isinstance(v, str) and bool(v), "'heldout' (synthetic), or a TFDS split"),
    ("eval.annotations", lambda v: isinstance(v, str), "an STGR evaluation file or ''"),
    ("eval.examples", _positive_int, "a positive int (synthetic held-out examples; others: at most this many)"),
    ("eval.batch_size", _positive_int, "a positive int"),
    ("eval.max_new_tokens", lambda v: _int(v) and v >= 0, "an int >= 0 (0: rl.max_new_tokens)"),
    ("eval.temperature", _nonneg, "a number >= 0 (0: greedy)"),
    ("eval.top_p", lambda v: isinstance(v, (int, float)) and 0 < v <= 1, "in (0, 1]"),
    ("eval.vstar", lambda v: isinstance(v, str), "'' (off), 'synthetic', or a V-STaR annotation file"),
    ("eval.vstar_videos", lambda v: isinstance(v, str), "the folder of the V-STaR videos, or ''"),
    ("eval.vstar_items", lambda v: _int(v) and v >= 0, "an int >= 0 (0: every item)"),
    ("eval.vstar_boxes", lambda v: v in ("rescale", "release"), "rescale (to video pixels) or release (as given)"),
    ("eval.judge", lambda v: isinstance(v, str) and bool(v), "'match', 'policy', or a judge checkpoint folder"),
    ("checkpoint.every", _positive_int, "a positive int"),
    ("checkpoint.keep", _positive_int, "a positive int"),
    ("log.every", _positive_int, "a positive int"),
    ("resume.allow_changes", lambda v: isinstance(v, bool), "true or false"),
)


def gcs_available() -> bool:
    """Whether etils.epath (orbax's paths, our metrics) can open gs:// paths here."""
    import importlib.util

    return importlib.util.find_spec("gcsfs") is not None


def _get(cfg: Mapping, dotted: str):
    node = cfg
    for part in dotted.split("."):
        if part not in node:
            raise ValueError(f"config.{dotted} is missing")
        node = node[part]
    return node


def validate(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Raises ValueError naming the first bad field; returns `cfg` for chaining."""
    for field, ok, need in _RULES:
        value = _get(cfg, field)
        _check(ok(value), field, value, need)
    _check(cfg.sft.prompted_frac + cfg.sft.privileged_frac <= 1, "sft.privileged_frac", cfg.sft.privileged_frac,
           f"sft.prompted_frac + sft.privileged_frac must be <= 1 (prompted_frac={cfg.sft.prompted_frac})")
    axes = [cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor]
    _check(axes.count(-1) <= 1, "mesh", dict(cfg.mesh), "at most one axis may be -1 (fills the remaining devices)")
    _check(cfg.data.min_frames <= cfg.data.max_frames, "data.min_frames", cfg.data.min_frames,
           f"<= data.max_frames ({cfg.data.max_frames})")
    per_step = cfg.rl.prompts_per_step * cfg.rl.num_generations
    _check(per_step % cfg.rl.minibatches == 0, "rl.minibatches", cfg.rl.minibatches,
           f"must divide prompts_per_step * num_generations = {per_step}")
    _check(bool(cfg.model.preset) != bool(cfg.model.path), "model.path", cfg.model.path,
           "give exactly one of model.preset (a named shape) or model.path (a HF checkpoint dir)")
    if cfg.data.token_buckets:
        _check(cfg.data.token_buckets[-1] <= cfg.data.max_prompt_tokens, "data.token_buckets",
               cfg.data.token_buckets, f"must not exceed data.max_prompt_tokens ({cfg.data.max_prompt_tokens})")
    if cfg.data.source == "stgr":
        _check(bool(cfg.data.annotations), "data.annotations", cfg.data.annotations,
               "an STGR JSON/JSONL file when data.source='stgr'")
    if cfg.eval.every and cfg.data.source == "stgr":
        _check(bool(cfg.eval.annotations), "eval.annotations", cfg.eval.annotations,
               "an STGR evaluation file when eval.every > 0 on STGR data")
    if cfg.data.source == "tfds":
        _check(bool(cfg.data.tfds_name), "data.tfds_name", cfg.data.tfds_name,
               "a TFDS dataset name when data.source='tfds'")
    _check(cfg.data.min_pixels <= cfg.data.max_pixels, "data.min_pixels", cfg.data.min_pixels,
           f"<= data.max_pixels ({cfg.data.max_pixels})")
    if str(cfg.workdir).startswith("gs://"):
        _check(gcs_available(), "workdir", cfg.workdir,
               "a gs:// work directory needs gcsfs (pip install -e '.[tpu]'; tpu/launch.py install does)")
    _check(cfg.sft.steps + cfg.rl.steps > 0, "rl.steps", cfg.rl.steps, "sft.steps + rl.steps must be > 0")
    if cfg.workdir and "://" not in str(cfg.workdir):
        _check(_writable_dir(str(cfg.workdir)), "workdir", cfg.workdir,
               "a directory this process can create and write (it is a file, or not writable)")
    return cfg


def check_paths(cfg) -> None:
    """Checkpoint directories named by the config exist (the CLI's start-up check; `validate`
    itself stays a check of values, so configs can be built for paths elsewhere)."""
    import os

    init = str(cfg.model.init_from)
    if init and "://" not in init:
        _check(os.path.isdir(os.path.join(init, "checkpoints")), "model.init_from", init,
               "a training run's work directory (no checkpoints/ there)")
    for field in ("model.path", "visd.judge_path"):
        path = str(_get(cfg, field))
        if path and "://" not in path:
            _check(os.path.isfile(os.path.join(path, "config.json")), field, path,
                   "a Hugging Face checkpoint directory (no config.json there)")
    sel = str(cfg.coach.selector)
    if sel.startswith("cached:"):  # read now: an unknown kind in the cache is a start-up error
        from visd_jax.vp_selector.labels import read_predictions

        try:
            read_predictions(sel[len("cached:"):])
        except ValueError as e:
            _check(False, "coach.selector", sel, str(e))
    if sel.startswith("learned:"):
        _check(os.path.isfile(os.path.join(sel[len("learned:"):], "selector_config.json")), "coach.selector", sel,
               "a VP-Selector run directory (python -m experiments.vp_selector; no selector_config.json there)")


def _writable_dir(path: str) -> bool:
    import os

    p = os.path.abspath(path)
    if os.path.exists(p):
        return os.path.isdir(p) and os.access(p, os.W_OK | os.X_OK)
    parent = os.path.dirname(p)
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    return os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK)


def unknown_overrides(cfg, argv) -> list[str]:
    """One line per `--config.FIELD=...` of `argv` naming no field, with the nearest names."""
    import difflib

    fields = []

    def walk(node, prefix):
        for k, v in node.items():
            fields.append(prefix + k)
            if hasattr(v, "items"):  # ConfigDict (not a Mapping) or dict
                walk(v, prefix + k + ".")

    walk(cfg, "")
    out = []
    for arg in argv:
        if arg.startswith("--config."):
            name = arg[len("--config."):].split("=", 1)[0]
            if name not in fields:
                near = difflib.get_close_matches(name, fields, n=2, cutoff=0.6)
                out.append(f"config.{name} is not a field" + (f"; did you mean {' or '.join(near)}?" if near else ""))
    return out
