"""The one trainer: SFT cold start, then GSPO / VisionCoach / VISD / both, by config.

    train(config)  # or: Trainer(config).run()

Per RL step: G rollouts of each prompt -> seven rewards -> group advantages; in coach
modes, hard prompts get a visual prompt and G prompted rollouts, the best of which are
distilled (NLL); in VISD modes, each rollout is judged and the EMA teacher, seeing the
judge's privileged block, scores the student's tokens for direction-magnitude advantages
(while lambda > 0). An RL step is `collect` (host: rollouts, rewards, coach, judge ->
typed `RolloutBatch`es) then `learn` (device: scoring, advantages, the minibatch updates
with the old log-probs of rollout time, so the GSPO ratio moves and the clip acts, and the
EMA teacher following the student). Batches are bucketed (prompt lengths, vision
canvases), so each program compiles once per bucket: metrics.jsonl counts them. Checkpoints (state + data iterator) every N steps; a run
restarted in the same work directory resumes where the last checkpoint left it.
"""
from __future__ import annotations

import json
import logging
import re
import time

import jax
import numpy as np
from etils import epath
from jax.sharding import NamedSharding, PartitionSpec
from flax import nnx

from visd_jax.parallel import global_array, is_main_process, make_mesh, maybe_initialize, named_sharding
from visd_jax.pipeline import ExampleConfig, PipelineConfig, make_iterator
from visd_jax.training import inputs, sft
from visd_jax.training.coach import coach
from visd_jax.training.batch import RolloutBatch, build_batch, place
from visd_jax.training.config import COACH_MODES, VISD_MODES, config_changes, validate
from visd_jax.training.metrics import BadRecordLog, MetricsWriter, Progress, plot_curves, read_metrics, timer
from visd_jax.training.programs import Programs
from visd_jax.training.rollouts import Collected, ModelSampler, rollout, teacher_batch
from visd_jax.training.schedules import make_optimizer, teacher_active, visd_lambda
from visd_jax.training.routing import minibatch_rows
from visd_jax.training.selector import PROMPT_KINDS, make_selector
from visd_jax.training.setup import build_data, build_model, flat_state, frozen_path, run_inputs, unflat_state
from visd_jax.training.step import Steps, frozen_copy, init_state
from visd_jax.training.checkpoint import Checkpointer, restore_newest
from visd_jax.training.judging import make_judge

log = logging.getLogger(__name__)
# completion lengths of SFT targets; 192 keeps a 2-claim trace (<= ~140 tokens) off 256
SFT_TARGET_BUCKETS = (32, 64, 128, 192, 256, 384, 512, 768, 1024, 2048)


class Trainer:
    def __init__(self, cfg):
        self.cfg = validate(cfg)
        maybe_initialize()
        self.mesh = make_mesh(dict(cfg.mesh))
        self.main = is_main_process()
        self.workdir = epath.Path(cfg.workdir)
        self.rl_mode = cfg.mode if cfg.mode != "sft" else None
        self.sft_steps = cfg.sft.steps
        self.rl_steps = cfg.rl.steps if self.rl_mode else 0
        self.total = self.sft_steps + self.rl_steps

        model, self.tokenizer, tok_dir = build_model(cfg, self.mesh)
        self.graphdef, params = nnx.split(model)
        io = run_inputs(cfg, model.config, self.tokenizer, tok_dir, blocks_per_batch=max(
            cfg.rl.prompts_per_step * len(PROMPT_KINDS), cfg.sft.batch_size))
        self.io = io
        self.ids, self.pad_id, self.eos_id = io.ids, io.ids.pad, io.ids.im_end
        self.example_cfg, self.token_buckets, self.buckets = io.example_cfg, io.token_buckets, io.buckets
        self.sft_prompt_buckets, self.ctx, max_patches, vision = io.sft_prompt_buckets, io.ctx, io.max_patches, io.vision
        self.source = build_data(cfg, self.workdir)
        # Every process reads the WHOLE global batch (one shard, not one per process): the
        # host half of an RL step (rewards, coach, judge, advantages) needs every rollout of
        # every prompt, and identical batches make each process's host logic, iterator
        # state and checkpoint meta identical, so a multi-host run equals a single-host one.
        # The cost is that each host decodes every video of the batch; sharding the decoding
        # and all-gathering the examples would save that at the price of shipping patches.
        d = cfg.data
        pipe = lambda bs, seed: PipelineConfig(  # noqa: E731
            example=ExampleConfig(**{**self.example_cfg.__dict__, "max_patches": max_patches}),
            buckets=self.buckets, batch_size=bs, policy=d.bad_records, seed=seed, num_epochs=None,
            max_bad_fraction=d.max_bad_fraction,
            drop_remainder=True, workers=d.num_workers, shard_index=0, shard_count=1)
        # data.order_seed >= 0 fixes the data order apart from the run's seed (a study compares
        # methods and seeds on the same prompts in the same order); -1: the run's seed
        order = d.order_seed if d.order_seed >= 0 else cfg.seed
        self.sft_iter = make_iterator(self.source, pipe(cfg.sft.batch_size, order + 1)) if self.sft_steps else None
        self.rl_iter = make_iterator(self.source, pipe(cfg.rl.prompts_per_step, order)) if self.rl_steps else None

        self.sft_opt, _ = make_optimizer(lr=cfg.sft.lr, total_steps=max(1, self.sft_steps),
                                         warmup_steps=min(cfg.sft.warmup_steps, max(0, self.sft_steps - 1)),
                                         weight_decay=cfg.sft.weight_decay, grad_clip=cfg.sft.grad_clip,
                                         mu_dtype=cfg.model.mu_dtype or None)
        updates = max(1, self.rl_steps * cfg.rl.minibatches)
        self.rl_opt, _ = make_optimizer(lr=cfg.rl.lr, total_steps=updates,
                                        warmup_steps=min(cfg.rl.warmup_steps * cfg.rl.minibatches, updates - 1),
                                        weight_decay=cfg.rl.weight_decay, grad_clip=cfg.rl.grad_clip,
                                        mu_dtype=cfg.model.mu_dtype or None)
        uses_teacher = self.rl_mode in VISD_MODES
        opt = self.sft_opt if self.sft_steps else self.rl_opt
        # the reference KL's frozen copy, in the compute dtype: only ever read by a forward
        # (under LoRA the frozen base is the reference: no copy)
        lora = bool(cfg.model.lora.rank)
        self.state = init_state(params, opt, teacher=uses_teacher, teacher_dtype=cfg.visd.teacher_dtype or None,
                                ref=bool(self.rl_mode) and cfg.rl.ref_kl_beta > 0 and not lora,
                                ref_dtype=cfg.model.dtype, trainable=nnx.LoRAParam if lora else None)
        self.frozen = frozen_path(cfg)  # names a checkpoint leaves out (the LoRA base), or None
        # scalars (step, optimizer counts) are born on one device: replicate them on the mesh
        # so every leaf has a mesh sharding and the jitted step's out_shardings are explicit
        replicated = NamedSharding(self.mesh, PartitionSpec())
        self.state = jax.tree.map(
            lambda x: x if isinstance(x.sharding, NamedSharding) else jax.device_put(x, replicated), self.state)
        self.shardings = jax.tree.map(lambda x: x.sharding, self.state)
        r = cfg.rl
        self.programs = Programs()
        self.steps = Steps.from_config(cfg, self.graphdef, self.rl_opt, self.shardings, self.programs)
        self.sampler = ModelSampler(self._model, r.max_new_tokens, r.temperature, r.top_p, r.top_k or None,
                                    self.ids.stop, self.pad_id, self.ids.media, self.programs)
        # a batch's shape bucket: (canvas or no media) x slot count x prompt width
        per = (vision.count + 1) * len(self.token_buckets)
        for name, n in (("sample", per), ("score", per * (len(self.token_buckets) + 1)),
                        ("rl_update", 4 * per * (per + 1)), ("ema", 1),
                        ("sft_update", (vision.count + 1) * len(self.sft_prompt_buckets) * len(SFT_TARGET_BUCKETS))):
            self.programs.bound(name, n)
        self.selector = make_selector(cfg.coach.selector, workdir=self.workdir, source=self.source) \
            if self.rl_mode in COACH_MODES or cfg.sft.prompted_frac else make_selector("oracle")
        self.judge = make_judge(cfg, policy_model_of=self._model, policy_tokenizer=self.tokenizer, mesh=self.mesh,
                                pad_id=self.pad_id, stop_ids=self.ids.stop) if self.rl_mode in VISD_MODES else None
        self.key = jax.random.key(cfg.seed)
        self.ckpt = Checkpointer(self.workdir / "checkpoints", every=cfg.checkpoint.every,
                                 keep=cfg.checkpoint.keep, async_save=cfg.checkpoint.async_save)
        self.start = 0
        self._maybe_resume()
        self.metrics = MetricsWriter(self.workdir, enabled=self.main, tensorboard=cfg.log.tensorboard,
                                     resume_step=self.start, wandb=cfg.log.wandb, wandb_project=cfg.log.wandb_project,
                                     run_config=json.loads(cfg.to_json()))
        self.bad_log = BadRecordLog(self.workdir, enabled=self.main)
        self.progress = Progress(self.total, phases={"sft": self.sft_steps, "rl": self.rl_steps},
                                 enabled=self.main and cfg.log.progress)

    def _placed(self, tree, part: str):
        """`tree` (a fresh part of the state) put on the shardings that part has."""
        return jax.device_put(tree, self.shardings[part])

    def _teacher_from_policy(self):
        """teacher <- a copy of the current policy (own buffers: the steps donate the state)."""
        self.state["teacher"] = self._placed(frozen_copy(self.state["params"], self.cfg.visd.teacher_dtype or None),
                                             "teacher")

    def _ref_from_policy(self):
        """reference <- the current policy, frozen, in the compute dtype."""
        self.state["ref"] = self._placed(frozen_copy(self.state["params"], self.cfg.model.dtype), "ref")

    # ------------------------------------------------------------------ checkpoints
    def _maybe_resume(self):
        """Restores the newest intact checkpoint; damaged newer ones are skipped with a warning."""
        if self.ckpt.latest_step() is None:
            return
        if self.sft_steps and self.ckpt.latest_step() > self.sft_steps:  # it holds the RL optimizer's state
            # (both optimizers are the same chain, so a fallback into SFT restores into it too)
            self.state["opt"] = self._placed(self.steps.init_opt(self.rl_opt, self.state["params"]), "opt")
        step, flat, meta, missing, damaged = restore_newest(self.ckpt, self._flat())
        if "config" in meta:
            meaningful, other = config_changes(meta["config"], self.cfg)
            if meaningful and not self.cfg.resume.allow_changes:
                raise ValueError(f"the checkpoint at step {step} in {self.ckpt.directory} was written by another "
                                 f"config: {'; '.join(meaningful)}. Give a fresh config.workdir, or "
                                 f"--config.resume.allow_changes=true to resume anyway")
            for line in meaningful + other:
                log.warning("resuming with a changed config: %s", line)
        self.ckpt.set_aside(damaged)  # only now that the restore is accepted: it writes them again
        self.state = unflat_state(self.state, {**flat_state(self.state), **flat})  # + the frozen base, as built
        if any(n.startswith("['teacher']") for n in missing):
            self._teacher_from_policy()
        if any(n.startswith("['ref']") for n in missing):
            # the policy RL started from is gone: the closest frozen reference is this one
            log.warning("the checkpoint at step %d has no reference model (rl.ref_kl_beta was 0): the reference "
                        "KL is taken to the restored policy from here on", step)
            self._ref_from_policy()
        for name in ("sft_iter", "rl_iter"):
            it = getattr(self, name)
            if it is not None and meta.get(name) is not None:
                it.set_state(meta[name])
        self.start = step
        log.info("resumed from %s at step %d", self.ckpt.directory, step)

    def _save(self, step: int, force: bool = False):
        if not force and step % self.ckpt.every:
            return
        meta = {n: getattr(self, n).get_state() for n in ("sft_iter", "rl_iter") if getattr(self, n) is not None}
        meta["config"] = json.loads(self.cfg.to_json())  # what a restart compares itself with
        self.ckpt.save(step, self._flat(), meta, force=force)

    def _flat(self) -> dict:
        """The state's arrays a checkpoint holds: all, or under LoRA all but the frozen base
        (rebuilt from model.path or the seed on restart: 7B of weights not written each time)."""
        flat = flat_state(self.state)
        return flat if self.frozen is None else {k: v for k, v in flat.items() if not self.frozen(k)}

    # ------------------------------------------------------------------ device placement
    def _array(self, x, names):
        """Host NumPy (the same on every process) -> a global array sharded by `names`.

        On several processes jit needs global jax.Arrays, not per-process NumPy."""
        if x is None:
            return None
        return global_array(x, named_sharding(self.mesh, names, np.shape(x)))

    def _place(self, b: RolloutBatch | None) -> RolloutBatch | None:
        return None if b is None else place(b, self.mesh)

    def _rows(self, batch) -> list[int]:
        """Real rows of a batch (padding rows of a short final batch left out); video and
        image (visual QA) examples alike."""
        rows = [b for b in range(len(batch["meta"])) if batch["example_mask"][b]]
        if not rows:
            raise ValueError("a batch held no real example (every record of it was skipped as bad)")
        return rows

    def _model(self, params=None):
        return nnx.merge(self.graphdef, self.state["params"] if params is None else params)

    # ------------------------------------------------------------------ SFT
    def sft_step(self, step: int) -> dict:
        cfg = self.cfg
        batch = next(self.sft_iter)
        rows = self._rows(batch)
        max_claims = cfg.sft.max_claims or None
        targets = sft.targets_of(batch, rows, tokenizer=self.tokenizer, eos_id=self.eos_id, max_claims=max_claims)
        t = inputs.bucket(max(len(x) for x in targets), SFT_TARGET_BUCKETS)
        tok = np.full((len(rows), t), self.pad_id, np.int32)
        tmask = np.zeros((len(rows), t), np.int32)
        for i, x in enumerate(targets):
            tok[i, : len(x)], tmask[i, : len(x)] = x, 1
        view = sft.view_of_step(step, seed=cfg.seed, prompted_frac=cfg.sft.prompted_frac,
                                privileged_frac=cfg.sft.privileged_frac)
        media = [inputs.blocks_of_row(batch, b) for b in rows]
        out = {"phase": "sft", f"sft/view_{view}": 1.0}
        if view == "privileged":
            ids = sft.privileged_ids(batch, rows, tokenizer=self.tokenizer, marker=self.eos_id, max_claims=max_claims)
        elif view == "prompted":
            kinds = sorted({k for c in self.selector.candidates([batch["meta"][b] for b in rows]) for k in c})
            kind = sft.view_kind(step, seed=cfg.seed, kinds=kinds)
            ids, media, out["sft/prompted_kept_raw"] = sft.prompted_rows(
                batch, rows, kind, source=self.source, example_cfg=self.example_cfg, buckets=self.buckets,
                max_frames=self.example_cfg.frame_slots, pad_id=self.pad_id)
        else:
            ids = inputs.prompt_ids_of(batch, rows)
        # each view pads to the tightest of the run's prompt buckets: raw batches stay short
        width = inputs.bucket(max(map(len, ids)), self.sft_prompt_buckets)
        b = build_batch(self.ctx, ids, tok, tmask, range(len(rows)), media, prompt_len=width)
        self.state, m = self.steps.sft_update(self.sft_opt)(self.state, self._place(b))
        return {**out, **{f"sft/{k}": float(x) for k, x in m.items()}, "sft/target_tokens": float(tmask.sum())}

    # ------------------------------------------------------------------ RL
    def rl_step(self, step: int) -> dict:
        rl_step = step - self.sft_steps
        if rl_step == 0 and self.sft_steps:
            self.state["opt"] = self._placed(self.steps.init_opt(self.rl_opt, self.state["params"]), "opt")  # fresh
            if self.state["teacher"] is not None:
                # The teacher starts as the policy RL starts from (SPEC 6), i.e. the SFT model,
                # not the random init it was copied from before SFT (whose signal is noise).
                self._teacher_from_policy()
            if self.state["ref"] is not None:  # so does the reference of the KL
                self._ref_from_policy()
        c = self.collect(step)
        out = {**c.stats, **self.learn(c)}
        out["tokens_per_s"] = float(c.raw.mask.sum()) / max(out["time/rollout"], 1e-9)
        g = c.raw.group
        self._samples(step + 1, c.meta, c.raw.texts[:g], c.raw.scores["total"][0])
        return out

    def collect(self, step: int) -> Collected:
        """The host half of an RL step: G rollouts per prompt, rewards, coaching, judging,
        and the typed batches the learner takes."""
        cfg, r, v = self.cfg, self.cfg.rl, self.cfg.visd
        rl_step = step - self.sft_steps
        out = {"phase": "rl"}
        with timer(out, "time/rollout"):
            batch = next(self.rl_iter)
            rows = self._rows(batch)
            key = jax.random.fold_in(self.key, step)
            do_rollout = lambda b, rws, k: rollout(  # noqa: E731
                self.sampler, b, rws, ctx=self.ctx, key=k, num_samples=r.num_generations,
                progress=rl_step / max(1, self.rl_steps))
            raw = do_rollout(batch, rows, jax.random.fold_in(key, 0))
        total = raw.scores["total"]
        out.update({"reward/total": float(total.mean()),
                    **{f"reward/{k}": float(x.mean()) for k, x in raw.scores.items() if k != "total"},
                    "rollout/length": float(raw.mask.sum(1).mean())})
        sd = None
        if self.rl_mode in COACH_MODES:
            with timer(out, "time/coach"):
                co = cfg.coach
                sd = coach(raw, batch, ctx=self.ctx, source=self.source, selector=self.selector,
                           do_rollout=lambda pb: do_rollout(pb, list(range(len(pb["meta"]))),
                                                            jax.random.fold_in(key, 1)),
                           example_cfg=self.example_cfg, buckets=self.buckets,
                           max_frames=self.example_cfg.frame_slots, threshold=co.hard_threshold, top_n=co.top_n,
                           rule=co.candidate_rule)
            out.update(sd.stats)
        use_signal = self.rl_mode in VISD_MODES and teacher_active(rl_step, steps=v.lambda_steps)
        student = raw.batch(self.ctx)
        tb = None
        with timer(out, "time/judge"):
            if use_signal:
                self.judge.reset()
                tb, jstats = teacher_batch(raw, batch, ctx=self.ctx, judge=self.judge, packed=student.media)
                out.update(jstats)
                out.update(self.judge.stats())
        mix = float(visd_lambda(rl_step, start=v.lambda_start, steps=v.lambda_steps))
        out["visd/lambda"] = mix if use_signal else 0.0
        return Collected(student, tb, None if sd is None or sd.batch is None else sd,
                         mix, raw, batch["meta"][raw.rows[0]], out)

    def learn(self, c: Collected) -> dict:
        """The device half: old log-probs, teacher signal and advantages, then the minibatch
        updates (rows taken on the device) and the EMA."""
        r, co = self.cfg.rl, self.cfg.coach
        out = {}
        use_signal, use_sd = c.teacher is not None, c.sd is not None
        plan = minibatch_rows(c.batch.rows, r.minibatches, None if c.sd is None else c.sd.prompt,
                              group=c.raw.group, per_prompt=co.top_n, weighting=co.sd_weighting,
                              multiple=self.mesh.shape["data"] * self.mesh.shape["fsdp"])
        with timer(out, "time/teacher"):
            b = self._place(c.batch)
            # the teacher's rows read the same media as the student's: one copy on the device
            tb = None if c.teacher is None else self._place(c.teacher.replace(media=None)).replace(media=b.media)
            rewards = self._array(c.raw.scores["total"].astype(np.float32), ("batch", None))
            rows_of = [self._array(m.rows, (None,)) for m in plan]  # on the device once, for both
            # every minibatch scored before the first update: the rollout policy's log-probs
            scored = [self.steps.score()(self.state["params"], self.state["teacher"] if use_signal else None,
                                         self.state["ref"], b, tb, rewards, rows) for rows in rows_of]
            jax.block_until_ready(scored)
        with timer(out, "time/update"):
            sd = self._place(None if c.sd is None else c.sd.batch)
            fn = self.steps.rl_update(use_signal=use_signal, use_sd=use_sd)
            mix = self._array(np.float32(c.mix), ())
            mets = []
            for k, (m, rows, sc) in enumerate(zip(plan, rows_of, scored)):
                self.state, met = fn(self.state, b, sc, mix, rows, sd,
                                     self._array(m.sd_rows, (None,)) if use_sd else None,
                                     self._array(m.sd_weight, (None,)) if use_sd else None,
                                     self._array(np.bool_(k == 0), ()))
                mets.append(met)
            # the teacher follows the student only while it teaches: after the schedule turns
            # it off (lambda 0) nothing reads it, and the EMA would be wasted work
            if use_signal:
                self.state = self.steps.ema()(self.state)
            mets = jax.device_get(mets)
        for k in mets[0]:
            out[f"train/{k}"] = float(np.mean([mm[k] for mm in mets]))
        out["train/skipped"] = float(sum(mm["skipped"] for mm in mets))
        return out

    def evaluate(self, step: int) -> dict:
        """The held-out evaluation of the current policy (`eval.*`; visd_jax/eval/run.py):
        predictions under workdir/eval/step_N, `eval/*` metrics (overall and per task)."""
        from visd_jax.eval.run import evaluate
        from visd_jax.training.setup import build_eval_data

        e = self.cfg.eval
        if getattr(self, "_eval_source", None) is None:
            self._eval_source = build_eval_data(self.cfg, self.workdir)
        out = {}
        with timer(out, "time/eval"):
            s = evaluate(self._model, self._eval_source, self.io, str(self.workdir / "eval" / f"step_{step}"),
                         batch_size=e.batch_size, max_new_tokens=e.max_new_tokens or self.cfg.rl.max_new_tokens,
                         temperature=float(e.temperature), top_p=float(e.top_p), seed=self.cfg.seed,
                         programs=self.programs, progress=False, write=self.main)
        out.update({f"eval/{k}": v for k, v in s.get("all", {}).items() if k != "n"})
        # task names as TensorBoard tag characters ("temporal QA (MCQ)" -> temporal_QA_MCQ)
        out.update({f"eval/{'_'.join(re.findall(r'[A-Za-z0-9-]+', task))}/total": v["total"]
                    for task, v in s["tasks"].items()})
        out["eval/examples"] = float(s["examples"])
        return out

    def _samples(self, step: int, meta: dict, texts, totals):
        """Appends the first prompt's rollouts to samples.jsonl: what the policy writes."""
        if not self.main:
            return
        with (self.workdir / "samples.jsonl").open("a") as f:
            f.write(json.dumps({"step": step, "id": meta["id"], "task": meta["task"],
                                "answer": meta["answer"],
                                "completions": [{"text": t, "reward": float(x)} for t, x in zip(texts, totals)]})
                    + "\n")

    # ------------------------------------------------------------------ loop
    def run(self) -> list[dict]:
        done = []
        with jax.set_mesh(self.mesh):
            for step in range(self.start, self.total):
                t = time.perf_counter()
                m = self.sft_step(step) if step < self.sft_steps else self.rl_step(step)
                m["time/step"] = time.perf_counter() - t
                m["data/bad_records"] = self.bad_log.update(step + 1, (self.sft_iter, self.rl_iter))
                if cfg_eval_due(self.cfg, step + 1, self.total):
                    m.update(self.evaluate(step + 1))
                m.update(self.programs.metrics())
                if m.get("train/skipped") or m.get("sft/skipped"):
                    log.warning("step %d: non-finite loss or gradient, update skipped", step + 1)
                self.metrics.write(step + 1, m)
                done.append({"step": step + 1, **m})
                self.progress.update(step + 1, reward=m.get("reward/total"), hard_frac=m.get("coach/hard_frac"),
                                     tokens_per_s=m.get("tokens_per_s"), extra=m["phase"])
                self._save(step + 1, force=step + 1 == self.total)
        self.ckpt.close()
        self.metrics.close()
        # Process 0 owns metrics.jsonl (the whole history, across resumes); the others may not
        # see it (per-host disks) or see it half-written, so they return this run's rows.
        rows = read_metrics(self.workdir) if self.main else done
        if self.main and any("reward/total" in x for x in rows):
            plot_curves([x for x in rows if "reward/total" in x],
                        ["reward/total", "reward/format", "reward/ans_acc", "reward/thk_spatial"],
                        self.workdir / "rewards.png", title=f"{self.cfg.mode}: reward per RL step")
        for it in (self.sft_iter, self.rl_iter):
            if it is not None:
                it.close()
        return rows


def cfg_eval_due(cfg, step: int, total: int) -> bool:
    """Evaluate after `step`: every `eval.every` steps and after the last one."""
    every = cfg.eval.every
    return bool(every) and (step % every == 0 or step == total)


def train(cfg) -> list[dict]:
    return Trainer(cfg).run()
