"""Will it fit? Every program of a run compiled for a TPU slice, on a CPU host, from shapes alone.

    python -m tpu.compile --config=experiments/visd_v5e.py:v5e_8               # 7B on v5e:2x4
    python -m tpu.compile --config=experiments/visd_v5e.py:v5e_8 --topology=v5e:4x4 \
        --config.model.preset=3b
    python -m tpu.compile --config=... --config.model.path=/ckpt/Qwen2.5-VL-7B  # its config.json

Needs the `tpu` extra (`pip install -e '.[tpu]'`: libtpu, whose compiler this is; no TPU is
touched). The model and train state are built ABSTRACTLY (`jax.ShapeDtypeStruct`s carrying
the shardings of the one rules table, no weights), then each jitted program the run uses is
lowered and compiled at the variant's largest shapes: the sampler (prefill at the largest
prompt bucket and the decode loop over a KV cache for G rollouts per prompt), the scorer
with the teacher (one minibatch), the RL update with every loss term on, the SFT update and
the EMA. XLA's own `memory_analysis()` gives each chip's argument, output and temporary
bytes, `cost_analysis()` the FLOPs and HBM bytes; a program fits when arguments + outputs -
donated + temporaries stay within the chip's HBM. Exit status 1 if any program does not fit.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys

# libtpu takes a host-wide lock file on load; a compile-only client opens no chip, so it may
# load next to another (a test process, a running job on a TPU VM)
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

GIB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Chip:
    kind: str  # jax's device_kind
    hbm: int  # bytes per chip XLA may use
    bf16_flops: float  # peak dense bf16 FLOP/s per chip
    hbm_bw: float  # bytes/s per chip


# Public figures (cloud.google.com/tpu/docs/system-architecture-tpu-vm); `hbm` is what XLA
# reports usable (16 GiB less the runtime's reserve on v5e).
CHIPS = {
    "v5e": Chip("TPU v5 lite", int(15.75 * GIB), 197e12, 819e9),
    "v5p": Chip("TPU v5", int(95.74 * GIB), 459e12, 2765e9),
    "v4": Chip("TPU v4", int(31.25 * GIB), 275e12, 1228e9),
}
# the slice each experiment variant is written for
VARIANT_TOPOLOGY = {"v5e_8": "v5e:2x4", "v5e_16": "v5e:4x4", "v5e_64": "v5e:8x8"}
# the model each variant is written for, compiled when neither model.preset nor model.path is given
VARIANT_MODEL = {"v5e_8": "3b", "v5e_16": "7b", "v5e_64": "7b"}


@dataclasses.dataclass(frozen=True)
class Row:
    program: str
    args: int  # bytes per chip
    outputs: int
    temps: int
    aliased: int  # outputs written into donated arguments
    flops: float  # XLA's count per chip (a scanned or while-loop body counted once)
    hbm_bytes: float  # XLA's bytes accessed per chip (likewise)
    note: str = ""
    model_flops: float = 0.0  # per chip per call: parameters x tokens (see `model_flops`)

    @property
    def total(self) -> int:
        return self.args + self.outputs - self.aliased + self.temps


@dataclasses.dataclass(frozen=True)
class Report:
    topology: str
    chip: Chip
    mesh: dict
    model: str
    shapes: dict
    state: dict  # part -> bytes per chip
    rows: tuple[Row, ...]

    @property
    def fits(self) -> bool:
        return sum(self.state.values()) <= self.chip.hbm and all(r.total <= self.chip.hbm for r in self.rows)

    def table(self) -> str:
        gib = lambda b: f"{b / GIB:.2f}"  # noqa: E731
        state = ", ".join(f"{k} {gib(v)}" for k, v in self.state.items())
        lines = [f"{self.model} on {self.topology} ({self.chip.kind}, mesh {self.mesh}, "
                 f"HBM {gib(self.chip.hbm)} GiB per chip)",
                 f"shapes: {self.shapes}",
                 f"train state per chip (GiB): {state}, total {gib(sum(self.state.values()))}",
                 "| program | args GiB | outputs GiB | temps GiB | total GiB | fits | model TFLOP/chip | "
                 "at peak ms | XLA TFLOP/chip | XLA HBM GB/chip | note |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in self.rows:
            lines.append(f"| {r.program} | {gib(r.args)} | {gib(r.outputs - r.aliased)} | {gib(r.temps)} | "
                         f"{gib(r.total)} | {'yes' if r.total <= self.chip.hbm else 'NO'} | "
                         f"{r.model_flops / 1e12:.2f} | {1e3 * r.model_flops / self.chip.bf16_flops:.0f} | "
                         f"{r.flops / 1e12:.2f} | {r.hbm_bytes / 1e9:.1f} | {r.note} |")
        over = [f"{r.program} needs {gib(r.total)} GiB" for r in self.rows if r.total > self.chip.hbm]
        if sum(self.state.values()) > self.chip.hbm:
            over.insert(0, f"the train state alone needs {gib(sum(self.state.values()))} GiB per chip "
                           "(no program compiled)")
        if self.rows:
            lines.append("model TFLOP: 2 (forward), 6 (forward + backward) or 8 (rematerialised) x "
                         "parameters x tokens, attention left out; XLA's counts take a scanned or "
                         "while-loop body once, so they are lower bounds.")
        lines.append("fits" if self.fits else "DOES NOT FIT: " + "; ".join(over))
        return "\n".join(lines)


def chip_of(topology: str) -> Chip:
    family = topology.split(":", 1)[0]
    if family not in CHIPS:
        raise ValueError(f"topology {topology!r}: unknown TPU family {family!r}; known: {sorted(CHIPS)}")
    return CHIPS[family]


def model_config(cfg):
    """The Qwen2.5-VL config whose shapes are compiled: model.path's config.json, else the
    preset, else the variant's model (`VARIANT_MODEL`)."""
    from visd_jax.models import Qwen25VLConfig

    if cfg.model.path:
        return Qwen25VLConfig.from_hf(cfg.model.path), f"{cfg.model.path}"
    name = cfg.model.preset or VARIANT_MODEL.get(cfg.get("variant", ""), "7b")
    return Qwen25VLConfig.preset(name), name


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def run_shapes(cfg, mcfg, shards: int = 1) -> dict:
    """The largest shapes each program meets in this run, from the config's buckets (the SD
    rows of a minibatch padded to the `shards` of the batch, as `routing.minibatch_rows`)."""
    import numpy as np

    from visd_jax.models.canvas import CanvasBuckets
    from visd_jax.pipeline.example import ExampleConfig
    from visd_jax.training.routing import minibatch_rows
    from visd_jax.training.selector import PROMPT_KINDS
    from visd_jax.training.trainer import SFT_TARGET_BUCKETS
    from visd_jax.video.resize import smart_resize

    d, r = cfg.data, cfg.rl
    frames = ExampleConfig(max_frames=d.max_frames, recipe=cfg.recipe, max_key_frames=d.max_key_frames).frame_slots
    # vision blocks per prompt: ours, one per 2-frame patch; the release, one image per frame
    slots = frames if cfg.recipe == "release" else -(-frames // mcfg.vision.temporal_patch_size)
    patch, merge = mcfg.vision.patch_size, mcfg.vision.spatial_merge_size
    # a 16:9 video at the pixel budget: the common worst case of the released data
    h, w = smart_resize(720, 1280, factor=patch * merge, min_pixels=d.min_pixels, max_pixels=d.max_pixels)
    blocks = max(r.prompts_per_step * len(PROMPT_KINDS), cfg.sft.batch_size) * slots
    vision = CanvasBuckets.for_area(max(d.max_pixels, d.image_max_pixels) // (patch * patch), blocks,
                                    ratio=d.canvas_ratio)
    canvas = vision.canvas_for([(h // patch, w // patch)])
    prompt = max(d.token_buckets) if d.token_buckets else d.max_prompt_tokens
    rows = r.prompts_per_step * r.num_generations
    if rows % r.minibatches:
        raise ValueError(f"{rows} rollouts do not split into {r.minibatches} minibatches")
    # SD rows a minibatch takes: the update plan's static length with every prompt coached
    coached = cfg.mode in ("visioncoach", "visd_coach") and cfg.coach.top_n > 0
    sd_rows = len(minibatch_rows(rows, r.minibatches, np.repeat(np.arange(r.prompts_per_step), cfg.coach.top_n),
                                 group=r.num_generations, per_prompt=cfg.coach.top_n,
                                 multiple=shards)[0].sd_rows) if coached else 0
    sft_target = next(b for b in SFT_TARGET_BUCKETS if b >= min(r.max_new_tokens, SFT_TARGET_BUCKETS[-1]))
    return dict(prompts=r.prompts_per_step, generations=r.num_generations, rows=rows,
                minibatch=rows // r.minibatches, prompt=prompt, completion=r.max_new_tokens,
                canvas=canvas, slots=vision.slots_for(r.prompts_per_step * slots),
                sd_rows=sd_rows,
                sd_total=r.prompts_per_step * cfg.coach.top_n, sft_rows=cfg.sft.batch_size, sft_completion=sft_target,
                sft_slots=vision.slots_for(cfg.sft.batch_size * slots))


def _per_chip(x) -> int:
    shape = x.sharding.shard_shape(x.shape) if getattr(x, "sharding", None) is not None else x.shape
    return math.prod(shape) * x.dtype.itemsize


def model_flops(program: str, s: dict, *, decoder: int, vision: int, canvas: int, remat: bool, teacher: bool,
                chips: int) -> float:
    """Per-chip FLOPs of one call from parameter counts and token counts (2 per parameter
    per token forward, 6 with the backward, 8 rematerialised): what XLA's cost analysis
    cannot give through the scanned layers and the decode loop."""
    def fwd(rows, seq, slots):
        return 2.0 * (decoder * rows * seq + vision * slots * canvas)

    train = 4.0 if remat else 3.0  # x forward
    if program == "sample":
        return (fwd(s["prompts"], s["prompt"], s["slots"])
                + 2.0 * decoder * s["prompts"] * s["generations"] * s["completion"]) / chips
    seq = s["prompt"] + s["completion"]
    if program == "score":
        return (2 if teacher else 1) * fwd(s["minibatch"], seq, s["slots"]) / chips
    if program == "rl_update":
        return train * (fwd(s["minibatch"], seq, s["slots"])
                        + (fwd(s["sd_rows"], seq, s["slots"]) if s["sd_rows"] else 0.0)) / chips
    if program == "sft_update":
        return train * fwd(s["sft_rows"], s["prompt"] + s["sft_completion"], s["sft_slots"]) / chips
    return 0.0


def _hbm_oom_bytes(message: str) -> int | None:
    """The temporaries XLA asked for when it refused a program as over HBM, else None."""
    import re

    if "CompileTimeHbmOom" not in message:
        return None
    m = re.search(r"temporaries \((\d+(?:\.\d+)?)([KMGT])\)", message)
    if not m:
        return None
    return int(float(m.group(1)) * 1024 ** "KMGT".index(m.group(2)) * 1024)


def fit_report(cfg, topology: str | None = None, programs_only: tuple[str, ...] = (), log=None) -> Report:
    """Compiles every program of `cfg`'s run for `topology` (default: the variant's slice);
    `programs_only` restricts it to those named; `log(text)` receives what XLA says of a
    program it refuses (its largest allocations)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.experimental import topologies
    from jax.sharding import NamedSharding, PartitionSpec

    from visd_jax.models.canvas import Media
    from visd_jax.models.model import abstract_params
    from visd_jax.parallel import make_mesh, named_sharding
    from visd_jax.sampling.generate import _compiled
    from visd_jax.training.batch import AXES, RolloutBatch
    from visd_jax.training.config import COACH_MODES, VISD_MODES, validate
    from visd_jax.training.schedules import make_optimizer
    from flax import nnx

    from visd_jax.training.setup import lora_spec
    from visd_jax.training.step import Scored, Steps, init_state, split_params

    # every field checked but the data's, which a compile never reads
    check = cfg.copy_and_resolve_references()
    with check.unlocked():
        check.data.source, check.workdir = "synthetic", check.workdir or "unused"
        if not (check.model.path or check.model.preset):
            check.model.preset = model_config(cfg)[1]
    validate(check)
    topology = topology or VARIANT_TOPOLOGY.get(cfg.get("variant", ""), "v5e:2x4")
    chip = chip_of(topology)
    devices = topologies.get_topology_desc(platform="tpu", topology_name=topology).devices
    mesh = make_mesh(dict(cfg.mesh), devices=devices)
    mcfg, name = model_config(cfg)
    s = run_shapes(cfg, mcfg, mesh.shape["data"] * mesh.shape["fsdp"])
    m = cfg.model
    lora = lora_spec(cfg)
    graphdef, params = abstract_params(mcfg, mesh, param_dtype=getattr(jnp, m.param_dtype),
                                       dtype=getattr(jnp, m.dtype), remat=m.remat, scan_layers=m.scan_layers,
                                       lora=lora)
    opt, _ = make_optimizer(lr=cfg.rl.lr, total_steps=max(2, cfg.rl.steps), weight_decay=cfg.rl.weight_decay,
                            grad_clip=cfg.rl.grad_clip, mu_dtype=m.mu_dtype or None)
    replicated = NamedSharding(mesh, PartitionSpec())
    uses_teacher = cfg.mode in VISD_MODES
    uses_ref = cfg.rl.ref_kl_beta > 0 and lora is None  # under LoRA the base is the reference
    trainable = None if lora is None else nnx.LoRAParam
    shapes = jax.eval_shape(lambda p: init_state(p, opt, teacher=uses_teacher,
                                                 teacher_dtype=cfg.visd.teacher_dtype or None,
                                                 ref=uses_ref, ref_dtype=m.dtype, trainable=trainable), params)
    psh = jax.tree.map(lambda x: x.sharding, params)
    # moments live where their parameters do; counts and scalars are replicated
    opt_sh = optax.tree_map_params(opt, lambda _, sh: sh, shapes["opt"], split_params(psh, trainable)[0],
                                   transform_non_params=lambda _: replicated)
    shard = dict(params=psh, opt=opt_sh, teacher=psh if uses_teacher else None, ref=psh if uses_ref else None,
                 step=replicated)
    state = {k: None if shapes[k] is None else jax.tree.map(
        lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh), shapes[k], shard[k])
        for k in shapes}
    state_bytes = {k: sum(_per_chip(x) for x in jax.tree.leaves(v)) for k, v in state.items() if v is not None}
    state_shardings = jax.tree.map(lambda x: x.sharding, state)

    def arr(shape, dtype, names):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=named_sharding(mesh, names, shape))

    def batch(rows, prompt, completion, slots):
        seq = prompt + completion
        H, W = s["canvas"]
        media = Media(arr((slots, H * W, mcfg.vision.patch_dim), jnp.uint8, AXES["pixels"]),
                      arr((slots, H * W), jnp.bool_, AXES["valid"]), (H, W))
        return RolloutBatch(arr((rows, seq), jnp.int32, AXES["ids"]), arr((rows, seq), jnp.int32, AXES["mask"]),
                            arr((rows, completion), jnp.int32, AXES["targets"]),
                            arr((rows, completion), jnp.int32, AXES["tmask"]),
                            arr((3, rows, seq), jnp.int32, AXES["positions"]), arr((rows, seq), jnp.int32, AXES["src"]),
                            media)

    r, v = cfg.rl, cfg.visd
    steps = Steps.from_config(cfg, graphdef, opt, state_shardings)
    full = batch(s["rows"], s["prompt"], s["completion"], s["slots"])
    mb, T = s["minibatch"], s["completion"]
    rows_idx = arr((mb,), jnp.int32, (None,))
    f32 = lambda shape, names: arr(shape, jnp.float32, names)  # noqa: E731
    scalar = lambda dtype: jax.ShapeDtypeStruct((), dtype, sharding=replicated)  # noqa: E731
    use_sd = cfg.mode in COACH_MODES and s["sd_rows"] > 0
    sd = batch(s["sd_total"], s["prompt"], s["completion"], s["slots"]) if use_sd else None
    teacher = state["teacher"]
    prompts = batch(s["prompts"], s["prompt"], 0, s["slots"])
    key = jax.eval_shape(lambda: jax.random.key(0))
    sampler = _compiled(graphdef, None, r.num_generations, r.max_new_tokens, float(r.temperature), float(r.top_p),
                        r.top_k or None, (0,), 0, None, (), True)
    sft = batch(s["sft_rows"], s["prompt"], s["sft_completion"], s["sft_slots"])
    programs = [
        ("sample", sampler, (state["params"], prompts.ids, prompts.mask, None, None,
                             jax.ShapeDtypeStruct((), key.dtype, sharding=replicated), None, prompts.media,
                             prompts.positions, prompts.src),
         f"{s['prompts']} prompts x {r.num_generations}, {s['prompt']}+{r.max_new_tokens} tokens"),
        ("score", steps.score(), (state["params"], teacher, state["ref"], full, full if uses_teacher else None,
                                  f32((s["prompts"], r.num_generations), ("batch", None)), rows_idx),
         f"{mb} rows" + (" + teacher" if uses_teacher else "") + (" + reference" if uses_ref else "")),
        ("rl_update", steps.rl_update(use_signal=uses_teacher, use_sd=use_sd),
         (state, full, Scored(f32((mb, T), ("batch", "seq")), f32((mb, T), ("batch", "seq")) if uses_teacher else None,
                              f32((mb,), ("batch",)), f32((mb, T), ("batch", "seq")) if uses_ref else None),
          scalar(jnp.float32), rows_idx, sd,
          arr((s["sd_rows"],), jnp.int32, (None,)) if use_sd else None,
          arr((s["sd_rows"],), jnp.float32, (None,)) if use_sd else None, scalar(jnp.bool_)),
         f"{mb} rows" + (f" + {s['sd_rows']} SD rows" if use_sd else "") + (" + ref KL" if uses_ref else "")),
        ("sft_update", steps.sft_update(opt), (state, sft),
         f"{s['sft_rows']} rows, {s['prompt']}+{s['sft_completion']} tokens"),
    ]
    if uses_teacher:
        programs.append(("ema", steps.ema(), (state,), "teacher <- EMA"))
    out = []
    mesh_shape = dict(zip(mesh.axis_names, (int(n) for n in np.shape(mesh.devices))))
    label = (f"{name} {cfg.mode} ({m.param_dtype} params, {m.dtype} compute, mu {m.mu_dtype or m.param_dtype}, "
             f"teacher {v.teacher_dtype or m.param_dtype}, remat {m.remat})")
    n_vision = sum(x.size for x in jax.tree.leaves(params["visual"]))
    flops_of = lambda prog: model_flops(  # noqa: E731
        prog, s, decoder=sum(x.size for x in jax.tree.leaves(params)) - n_vision, vision=n_vision,
        canvas=s["canvas"][0] * s["canvas"][1], remat=m.remat, teacher=uses_teacher, chips=len(devices))
    if sum(state_bytes.values()) > chip.hbm:  # every program takes the state: none can fit
        return Report(topology, chip, mesh_shape, label, s, state_bytes, ())
    with jax.set_mesh(mesh):
        for prog, fn, args, note in programs:
            if programs_only and prog not in programs_only:
                continue
            args_bytes = sum(_per_chip(x) for x in jax.tree.leaves(args))
            try:
                compiled = fn.lower(*args).compile()
            except jax.errors.JaxRuntimeError as e:  # XLA refuses a program over HBM at compile time
                need = _hbm_oom_bytes(str(e))
                if need is None:
                    raise
                if log is not None:
                    log(f"{prog}: {e}")
                out.append(Row(prog, args_bytes, 0, need, 0, 0.0, 0.0, f"{note}; XLA refused it "
                               "(CompileTimeHbmOom): temps as it reported", flops_of(prog)))
                continue
            mem = compiled.memory_analysis()
            cost = compiled.cost_analysis()
            cost = cost[0] if isinstance(cost, (list, tuple)) else cost
            out.append(Row(prog, int(mem.argument_size_in_bytes), int(mem.output_size_in_bytes),
                           int(mem.temp_size_in_bytes), int(mem.alias_size_in_bytes),
                           float(cost.get("flops", 0.0)), float(cost.get("bytes accessed", 0.0)), note, flops_of(prog)))
    return Report(topology, chip, mesh_shape, label, s, state_bytes, tuple(out))


def main(argv=None) -> None:
    from absl import app, flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", "experiments/visd_v5e.py:v5e_8",
                                             "experiment config file and variant (file.py:VARIANT)")
    topology = flags.DEFINE_string("topology", None, "TPU topology, e.g. v5e:2x4 (default: the variant's slice)")
    only = flags.DEFINE_list("programs", [], "compile only these (sample, score, rl_update, sft_update, ema)")
    verbose = flags.DEFINE_bool("verbose", False, "print XLA's largest allocations of a program over HBM")

    def run(_):
        report = fit_report(config.value, topology.value, tuple(only.value),
                            log=(lambda t: print(t, file=sys.stderr, flush=True)) if verbose.value else None)
        print(report.table(), flush=True)
        sys.exit(0 if report.fits else 1)

    app.run(run, argv=argv)


if __name__ == "__main__":
    main()
