"""The one trainer: SFT cold start, then GSPO / VisionCoach / VISD / both, by config.

    train(config)  # or: Trainer(config).run()

Per RL step: G rollouts of each prompt -> seven rewards -> group advantages; in coach
modes, hard prompts get a visual prompt and G prompted rollouts, the best of which are
distilled (NLL); in VISD modes, each rollout is judged and the EMA teacher, seeing the
judge's privileged block, scores the student's tokens for direction-magnitude advantages
(while lambda > 0). The rollout batch is split into minibatches with the old log-probs of
rollout time, so the GSPO ratio moves and the clip acts. The EMA teacher follows the
student after every step. Checkpoints (state + data iterator) every N steps; a run
restarted in the same work directory resumes where the last checkpoint left it.
"""
from __future__ import annotations

import json
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from jax.sharding import NamedSharding, PartitionSpec
from flax import nnx

from visd_jax import losses
from visd_jax.parallel import global_array, host_array, is_main_process, make_mesh, maybe_initialize, named_sharding
from visd_jax.pipeline import Buckets, ExampleConfig, PipelineConfig, make_iterator
from visd_jax.training import inputs, sft
from visd_jax.training.coach import coach
from visd_jax.training.config import config_changes, validate
from visd_jax.training.metrics import BadRecordLog, MetricsWriter, Progress, plot_curves, read_metrics
from visd_jax.training.rollouts import rollout, subset, teacher_seq
from visd_jax.training.schedules import make_optimizer, teacher_active, visd_lambda
from visd_jax.training.selector import make_selector
from visd_jax.text import special_ids
from visd_jax.training.setup import build_data, build_model, check_token_ids, flat_state, unflat_state
from visd_jax.training.step import Seq, Steps, score_fn
from visd_jax.training.checkpoint import Checkpointer, restore_newest
from visd_jax.training.judging import make_judge

log = logging.getLogger(__name__)
COACH_MODES = ("visioncoach", "visd_coach")
# completion lengths of SFT targets; 192 keeps a 2-claim trace (<= ~140 tokens) off 256
SFT_TARGET_BUCKETS = (32, 64, 128, 192, 256, 384, 512, 768, 1024, 2048)
VISD_MODES = ("visd", "visd_coach")


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
        # every special id from the tokenizer in use (a checkpoint's: 151643..), stop ids from
        # its generation_config.json; eos_id ends a chat turn (SFT targets, teacher marker)
        self.ids = special_ids(self.tokenizer, tok_dir)
        check_token_ids(model.config, self.ids, tok_dir)
        self.pad_id, self.eos_id = self.ids.pad, self.ids.im_end
        self.special = frozenset(int(i) for i in self.tokenizer.all_special_ids)

        d = cfg.data
        self.example_cfg = ExampleConfig(fps=d.fps, min_frames=d.min_frames, max_frames=d.max_frames,
                                         max_pixels=d.max_pixels, min_pixels=d.min_pixels,
                                         tokenizer_dir=tok_dir, max_tokens=d.max_prompt_tokens,
                                         recipe=cfg.recipe, image_min_pixels=d.image_min_pixels or None,
                                         image_max_pixels=d.image_max_pixels or None,
                                         max_key_frames=d.max_key_frames)
        self.token_buckets = tuple(d.token_buckets) or tuple(
            b for b in (128, 256, 512, 1024, 2048, 4096, 8192, 16384) if b < d.max_prompt_tokens
        ) + (d.max_prompt_tokens,)
        # ours: a 2-frame patch per 196 pixels of a frame pair; release: each frame (and key
        # frame) an image of its own, twice the patches; images may have their own budget
        slots = self.example_cfg.frame_slots
        max_patches = max(slots * d.max_pixels, d.image_max_pixels) // (14 * 14) + 4 * slots
        self.buckets = Buckets(tokens=self.token_buckets, patches=(max_patches,))
        self.sft_prompt_buckets = tuple(sorted(set(self.token_buckets) | {128, 256, 512, 1024, 2048}))
        self.source = build_data(cfg, self.workdir)
        # Every process reads the WHOLE global batch (one shard, not one per process): the
        # host half of an RL step (rewards, coach, judge, advantages) needs every rollout of
        # every prompt, and identical batches make each process's host logic, iterator
        # state and checkpoint meta identical, so a multi-host run equals a single-host one.
        # The cost is that each host decodes every video of the batch; sharding the decoding
        # and all-gathering the examples would save that at the price of shipping patches.
        pipe = lambda bs, seed: PipelineConfig(  # noqa: E731
            example=ExampleConfig(**{**self.example_cfg.__dict__, "max_patches": max_patches}),
            buckets=self.buckets, batch_size=bs, policy=d.bad_records, seed=seed, num_epochs=None,
            max_bad_fraction=d.max_bad_fraction,
            drop_remainder=True, workers=d.num_workers, shard_index=0, shard_count=1)
        self.sft_iter = make_iterator(self.source, pipe(cfg.sft.batch_size, cfg.seed + 1)) if self.sft_steps else None
        self.rl_iter = make_iterator(self.source, pipe(cfg.rl.prompts_per_step, cfg.seed)) if self.rl_steps else None

        self.sft_opt, _ = make_optimizer(lr=cfg.sft.lr, total_steps=max(1, self.sft_steps),
                                         warmup_steps=min(cfg.sft.warmup_steps, max(0, self.sft_steps - 1)),
                                         weight_decay=cfg.rl.weight_decay, grad_clip=cfg.rl.grad_clip)
        updates = max(1, self.rl_steps * cfg.rl.minibatches)
        self.rl_opt, _ = make_optimizer(lr=cfg.rl.lr, total_steps=updates,
                                        warmup_steps=min(cfg.rl.warmup_steps * cfg.rl.minibatches, updates - 1),
                                        weight_decay=cfg.rl.weight_decay, grad_clip=cfg.rl.grad_clip)
        uses_teacher = self.rl_mode in VISD_MODES
        opt = self.sft_opt if self.sft_steps else self.rl_opt
        self.state = {"params": params, "opt": opt.init(params),
                      "teacher": jax.tree.map(jnp.copy, params) if uses_teacher else None,
                      "step": jnp.zeros((), jnp.int32)}
        # scalars (step, optimizer counts) are born on one device: replicate them on the mesh
        # so every leaf has a mesh sharding and the jitted step's out_shardings are explicit
        replicated = NamedSharding(self.mesh, PartitionSpec())
        self.state = jax.tree.map(
            lambda x: x if isinstance(x.sharding, NamedSharding) else jax.device_put(x, replicated), self.state)
        self.shardings = jax.tree.map(lambda x: x.sharding, self.state)
        r, v = cfg.rl, cfg.visd
        self.steps = Steps(self.graphdef, self.rl_opt, self.shardings, temperature=r.temperature,
                           clip_low=r.clip_low, clip_high=r.clip_high, signal_clip=v.clip,
                           alpha=cfg.coach.alpha, ema_decay=v.ema_decay)
        self.selector = make_selector(cfg.coach.selector)
        self.judge = make_judge(cfg, policy_model_of=self._model, policy_tokenizer=self.tokenizer, mesh=self.mesh,
                                pad_id=self.pad_id, stop_ids=self.ids.stop) if self.rl_mode in VISD_MODES else None
        self.key = jax.random.key(cfg.seed)
        self.ckpt = Checkpointer(self.workdir / "checkpoints", every=cfg.checkpoint.every,
                                 keep=cfg.checkpoint.keep, async_save=cfg.checkpoint.async_save)
        self.start = 0
        self._maybe_resume()
        self.metrics = MetricsWriter(self.workdir, enabled=self.main, tensorboard=cfg.log.tensorboard,
                                     resume_step=self.start)
        self.bad_log = BadRecordLog(self.workdir, enabled=self.main)
        self.progress = Progress(self.total, phases={"sft": self.sft_steps, "rl": self.rl_steps},
                                 enabled=self.main and cfg.log.progress)

    def _placed(self, tree, part: str):
        """`tree` (a fresh part of the state) put on the shardings that part has."""
        return jax.device_put(tree, self.shardings[part])

    def _teacher_from_policy(self):
        """teacher <- a copy of the current policy (own buffers: the steps donate the state)."""
        self.state["teacher"] = self._placed(jax.tree.map(jnp.copy, self.state["params"]), "teacher")

    # ------------------------------------------------------------------ checkpoints
    def _maybe_resume(self):
        """Restores the newest intact checkpoint; damaged newer ones are skipped with a warning."""
        if self.ckpt.latest_step() is None:
            return
        if self.sft_steps and self.ckpt.latest_step() > self.sft_steps:  # it holds the RL optimizer's state
            # (both optimizers are the same chain, so a fallback into SFT restores into it too)
            self.state["opt"] = self._placed(self.rl_opt.init(self.state["params"]), "opt")
        step, flat, meta, missing, damaged = restore_newest(self.ckpt, flat_state(self.state))
        if "config" in meta:
            meaningful, other = config_changes(meta["config"], self.cfg)
            if meaningful and not self.cfg.resume.allow_changes:
                raise ValueError(f"the checkpoint at step {step} in {self.ckpt.directory} was written by another "
                                 f"config: {'; '.join(meaningful)}. Give a fresh config.workdir, or "
                                 f"--config.resume.allow_changes=true to resume anyway")
            for line in meaningful + other:
                log.warning("resuming with a changed config: %s", line)
        self.ckpt.set_aside(damaged)  # only now that the restore is accepted: it writes them again
        self.state = unflat_state(self.state, flat)
        if missing:
            self._teacher_from_policy()
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
        self.ckpt.save(step, flat_state(self.state), meta, force=force)

    # ------------------------------------------------------------------ device placement
    def _array(self, x, names):
        """Host NumPy (the same on every process) -> a global array sharded by `names`.

        On several processes jit needs global jax.Arrays, not per-process NumPy."""
        if x is None:
            return None
        return global_array(x, named_sharding(self.mesh, names, np.shape(x)))

    def _put(self, seq: Seq):
        put = self._array
        return (put(seq.ids, ("batch", "seq")), put(seq.mask, ("batch", "seq")),
                put(seq.targets, ("batch", "seq")), put(seq.tmask, ("batch", "seq")),
                put(seq.pixels, ("patches", None)), put(seq.seconds, (None,)))

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
        v = inputs.videos_for_rows(batch, rows)
        out = {"phase": "sft", f"sft/view_{view}": 1.0}
        if view == "privileged":
            ids = sft.privileged_ids(batch, rows, tokenizer=self.tokenizer, marker=self.eos_id, max_claims=max_claims)
        elif view == "prompted":
            kinds = sorted({k for c in self.selector.candidates([batch["meta"][b] for b in rows]) for k in c})
            kind = sft.view_kind(step, seed=cfg.seed, kinds=kinds)
            ids, v, out["sft/prompted_kept_raw"] = sft.prompted_rows(
                batch, rows, kind, source=self.source, example_cfg=self.example_cfg, buckets=self.buckets,
                max_frames=self.example_cfg.frame_slots, pad_id=self.pad_id)
        else:
            ids = inputs.prompt_ids_of(batch, rows)
        # each view pads to the tightest of the run's prompt buckets: raw batches stay short
        ptok, pmask = inputs.left_pad(ids, inputs.bucket(max(map(len, ids)), self.sft_prompt_buckets), self.pad_id)
        sid, smask = inputs.sequences(ptok, pmask, tok, tmask)
        seq = Seq(sid, smask, tok, tmask, v.pixels, v.seconds, v.grid)
        self.state, m = self.steps.sft_update(seq.grid, self.sft_opt)(self.state, self._put(seq))
        return {**out, **{f"sft/{k}": float(x) for k, x in m.items()}, "sft/target_tokens": float(tmask.sum())}

    # ------------------------------------------------------------------ RL
    def rl_step(self, step: int) -> dict:
        cfg, r = self.cfg, self.cfg.rl
        rl_step = step - self.sft_steps
        if rl_step == 0 and self.sft_steps:
            self.state["opt"] = self._placed(self.rl_opt.init(self.state["params"]), "opt")  # fresh moments
            if self.state["teacher"] is not None:
                # The teacher starts as the policy RL starts from (SPEC 6), i.e. the SFT model,
                # not the random init it was copied from before SFT (whose signal is noise).
                self._teacher_from_policy()
        t0 = time.perf_counter()
        batch = next(self.rl_iter)
        rows = self._rows(batch)
        key = jax.random.fold_in(self.key, step)
        progress = rl_step / max(1, self.rl_steps)
        times = {}

        def do_rollout(b, rws, k):
            return rollout(self._model(), b, rws, key=k, num_samples=r.num_generations,
                           max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p,
                           top_k=r.top_k or None, stop_ids=self.ids.stop, pad_id=self.pad_id,
                           token_buckets=self.token_buckets, tokenizer=self.tokenizer, special=self.special,
                           progress=progress, banned_ids=self.ids.media)

        raw = do_rollout(batch, rows, jax.random.fold_in(key, 0))
        times["time/rollout"] = time.perf_counter() - t0
        total = raw.scores["total"]
        # host_array: under the mesh, even this small result may be laid out over all processes
        adv = host_array(losses.group_advantages(rewards=jnp.asarray(total, jnp.float32),
                                                 eps=r.adv_eps)).reshape(-1)
        out = {"phase": "rl", "reward/total": float(total.mean()),
               **{f"reward/{k}": float(v.mean()) for k, v in raw.scores.items() if k != "total"},
               "rollout/length": float(raw.mask.sum(1).mean())}

        sd = None
        if self.rl_mode in COACH_MODES:
            t1 = time.perf_counter()
            c = cfg.coach
            res = coach(raw, batch, do_rollout=lambda pb: do_rollout(pb, list(range(len(pb["meta"]))),
                                                                      jax.random.fold_in(key, 1)),
                        source=self.source, selector=self.selector, example_cfg=self.example_cfg,
                        buckets=self.buckets, max_frames=self.example_cfg.frame_slots, threshold=c.hard_threshold,
                        top_n=c.top_n, rule=c.candidate_rule, pad_id=self.pad_id,
                        token_buckets=self.token_buckets)
            out.update(res.stats)
            times["time/coach"] = time.perf_counter() - t1
            if res.seq is not None:
                sd = res

        seq = raw.seq()
        use_signal = self.rl_mode in VISD_MODES and teacher_active(rl_step, steps=cfg.visd.lambda_steps)
        t2 = time.perf_counter()
        tseq = None
        if use_signal:
            self.judge.reset()
            tseq, jstats = teacher_seq(raw, batch, tokenizer=self.tokenizer, marker=self.eos_id,
                                       pad_id=self.pad_id, token_buckets=self.token_buckets, judge=self.judge)
            out.update(jstats)
            out.update(self.judge.stats())
        times["time/judge"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        v = cfg.visd
        score = score_fn(self.graphdef, seq.grid, None if tseq is None else tseq.grid, float(r.temperature),
                         v.signal_mode, int(v.top_k), float(v.gamma))
        old_logp, signal = score(self.state["params"], self.state["teacher"] if use_signal else None,
                                 self._put(seq), None if tseq is None else self._put(tseq))
        old_logp = host_array(old_logp)  # sharded over batch, maybe over other processes
        signal = None if signal is None else host_array(signal)
        times["time/teacher"] = time.perf_counter() - t3
        mix = float(visd_lambda(rl_step, start=v.lambda_start, steps=v.lambda_steps))
        out["visd/lambda"] = mix if use_signal else 0.0

        t4 = time.perf_counter()
        n = len(raw.texts)
        mb = n // r.minibatches
        g = r.num_generations
        row_of = lambda idx: [raw.rows[i // g] for i in idx]  # noqa: E731
        mets = []
        for m in range(r.minibatches):
            idx = np.arange(m * mb, (m + 1) * mb)
            s = subset(seq, idx, lambda ii: inputs.videos_for_rows(batch, row_of(ii)))
            sd_args = (None, None)
            if sd is not None:
                per = len(sd.selected) // r.minibatches
                j = np.arange(m * per, (m + 1) * per)
                sd_seq = sd.rows(j)
                sd_args = (self._put(sd_seq), self._array(sd.selected[j], ("batch",)))
            fn = self.steps.rl_update(s.grid, None if sd is None else sd_seq.grid,
                                      use_signal=use_signal, use_sd=sd is not None)
            self.state, met = fn(self.state, self._put(s), self._array(old_logp[idx], ("batch", "seq")),
                                 self._array(adv[idx], ("batch",)),
                                 None if signal is None else self._array(signal[idx], ("batch", "seq")),
                                 self._array(np.float32(mix), ()), *sd_args)
            mets.append(met)
        if self.state["teacher"] is not None:
            self.state = self.steps.ema()(self.state)
        mets = jax.device_get(mets)
        times["time/update"] = time.perf_counter() - t4
        for k in mets[0]:
            out[f"train/{k}"] = float(np.mean([mm[k] for mm in mets]))
        out["train/skipped"] = float(sum(mm["skipped"] for mm in mets))
        out["tokens_per_s"] = float(raw.mask.sum()) / max(times["time/rollout"], 1e-9)
        self._samples(step + 1, batch["meta"][raw.rows[0]], raw.texts[:g], total[0])
        out.update(times)
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


def train(cfg) -> list[dict]:
    return Trainer(cfg).run()
