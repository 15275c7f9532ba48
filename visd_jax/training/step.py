"""The jitted pieces of a training step: scoring, the RL update, the SFT update, the EMA.

Each takes whole `RolloutBatch`es and is built once per loss switch in the run's
`Programs` cache; jit compiles it once per batch bucket. Updates are jitted with the
state's shardings as explicit out shardings and the state donated, so an update rewrites
the parameter and optimizer buffers in place. The train state is a plain dict pytree:

  {"params": nnx.State, "opt": optax state, "teacher": nnx.State or None,
   "ref": nnx.State or None (the frozen reference of `rl.ref_kl_beta`), "step": int32}

A non-finite loss or gradient norm leaves params and optimizer untouched ("skipped" = 1 in
the metrics, with the step number); the host logs it and training goes on.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from visd_jax import losses
from visd_jax.models.lora import split_trainable, without_adapters
from visd_jax.training.batch import RolloutBatch
from visd_jax.training.programs import Programs
from visd_jax.training.schedules import ema_update


def completion_hidden(model, b: RolloutBatch):
    """Final hidden states at the positions that predict the completion tokens: [B, T, D]."""
    t, length = b.targets.shape[1], b.ids.shape[1]
    # media only in the prompt: build_batch gave completion positions no canvas token
    hidden = model.forward_packed(b.ids, b.mask, b.positions, b.media, None if b.media is None else b.src,
                                  return_hidden=True)
    return jax.lax.dynamic_slice_in_dim(hidden, length - t - 1, t, axis=1)


def _logp(model, b: RolloutBatch, temperature):
    h = completion_hidden(model, b)
    # logits / T == (h / T) @ W: the sampling temperature without materialising logits
    return losses.token_logprobs(hidden=h.astype(jnp.float32) / temperature,
                                 unembed=model.unembed, targets=b.targets), h


def split_params(params, trainable):
    """(what trains, the frozen rest or None): under LoRA the adapters and the base."""
    return (params, None) if trainable is None else split_trainable(params, trainable)


def merge_params(train, frozen):
    return train if frozen is None else nnx.merge_state(train, frozen)


def _apply_update(state, train, frozen, grads, loss, optimizer):
    """The optimizer step on the trainable part `train` (its gradient `grads`); the frozen
    part is put back untouched."""
    gnorm = optax.tree.norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(gnorm)
    updates, new_opt = optimizer.update(grads, state["opt"], train)
    new_train = optax.apply_updates(train, updates)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
    out = dict(state, params=merge_params(keep(new_train, train), frozen), opt=keep(new_opt, state["opt"]),
               step=state["step"] + 1)
    return out, {"grad_norm": gnorm, "skipped": (~ok).astype(jnp.int32)}


def frozen_copy(params, dtype=None):
    """A copy of `params` with own buffers (the steps donate the state), floats cast to `dtype`."""
    def cast(x):
        # always a new buffer: astype to the same dtype returns the array itself, and a state
        # holding one buffer twice is donated twice (a crash, not an error)
        if dtype is not None and jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != jnp.dtype(dtype):
            return x.astype(dtype)
        return jnp.copy(x)

    return jax.tree.map(cast, params)


def init_state(params, optimizer, *, teacher: bool, teacher_dtype=None, ref: bool = False, ref_dtype=None,
               trainable=None) -> dict:
    """The train state of `params` (pure: jitted by the AOT fit check, eager in the trainer).

    `teacher_dtype` stores the EMA teacher (default: the parameters' dtype). A bfloat16
    teacher halves its memory but cannot follow a student trained at lr ~1e-6: its 1% step
    toward the student is far below a bf16 ulp and rounds away (tests/training/test_mixed_precision.py).
    `ref`: a frozen reference copy for the reference KL, stored in `ref_dtype` (it is only
    ever read by a forward pass in the compute dtype, so storing more would buy nothing).
    `trainable` (an nnx filter, e.g. `nnx.LoRAParam`): only those parameters get optimizer
    moments; None: all.
    """
    return {"params": params, "opt": optimizer.init(split_params(params, trainable)[0]),
            "teacher": frozen_copy(params, teacher_dtype) if teacher else None,
            "ref": frozen_copy(params, ref_dtype) if ref else None, "step": jnp.zeros((), jnp.int32)}


class Scored(NamedTuple):
    """What `Steps.score` gives a minibatch's update (device arrays)."""

    old_logp: jax.Array  # [R, T] under the rollout policy
    signal: jax.Array | None  # [R, T] VISD teacher signal g_t, masked
    advantages: jax.Array  # [R]
    ref_logp: jax.Array | None  # [R, T] under the frozen reference (rl.ref_kl_beta > 0)


class Steps:
    """The jitted programs of a run's updates, built on demand in one `Programs` cache.

    Holds what every program shares (model graph, optimizer, state shardings, loss
    settings) so that a program's static key is only which loss terms are on; the batch
    shapes come from the buckets and jit keys on them.
    """

    def __init__(self, graphdef, optimizer, shardings, *, temperature: float, clip_low: float,
                 clip_high: float, signal_clip: float, alpha: float, ema_decay: float, adv_eps: float = 1e-6,
                 signal_mode: str = "topk", top_k: int = 16, gamma: float = 0.0, ref_kl_beta: float = 0.0,
                 trainable=None, programs: Programs | None = None):
        self.graphdef, self.optimizer, self.shardings = graphdef, optimizer, shardings
        self.temperature, self.clip_low, self.clip_high = temperature, clip_low, clip_high
        self.signal_clip, self.alpha, self.ema_decay, self.adv_eps = signal_clip, alpha, ema_decay, adv_eps
        self.signal_mode, self.top_k, self.gamma = signal_mode, top_k, gamma
        self.ref_kl_beta = float(ref_kl_beta)
        # under LoRA only the adapters train, and the frozen base is the KL's reference:
        # no copy of it is kept (PEFT's disable_adapter, which the release uses likewise)
        self.trainable = trainable
        self.programs = programs or Programs()

    @classmethod
    def from_config(cls, cfg, graphdef, optimizer, shardings, programs: Programs | None = None) -> "Steps":
        """The run's programs with the loss settings of `cfg` (the trainer and the fit check)."""
        r, v = cfg.rl, cfg.visd
        return cls(graphdef, optimizer, shardings, temperature=r.temperature, clip_low=r.clip_low,
                   clip_high=r.clip_high, signal_clip=v.clip, alpha=cfg.coach.alpha, ema_decay=v.ema_decay,
                   adv_eps=r.adv_eps, signal_mode=v.signal_mode, top_k=int(v.top_k), gamma=float(v.gamma),
                   ref_kl_beta=float(r.ref_kl_beta), programs=programs,
                   trainable=nnx.LoRAParam if cfg.model.lora.rank else None)

    def init_opt(self, optimizer, params):
        """Fresh optimizer state for the trainable part of `params`."""
        return optimizer.init(split_params(params, self.trainable)[0])

    def score(self):
        """(params, teacher_or_None, ref_or_None, batch, teacher_batch_or_None, rewards [N, G],
        rows [R]) -> `Scored` of one minibatch's rows.

        Scored per minibatch, with the rows the update will take, so the forward pass has the
        update's shapes and only a minibatch's activations live at once; every minibatch is
        scored before the first update (the rollout policy's log-probs). old_logp is the
        full-distribution log-prob (not the sampler's, whose top-p truncation would bias the
        ratio). The reference's log-probs are scored here too, never inside the update: the
        reference is frozen, so they are constants of the loss (no second forward under the
        gradient)."""
        graphdef, temperature = self.graphdef, self.temperature

        def run(params, teacher, ref, b, tb, rewards, rows):
            adv = losses.group_advantages(rewards=rewards.astype(jnp.float32), eps=self.adv_eps).reshape(-1)[rows]
            b = b.take(rows)
            model = nnx.merge(graphdef, params)
            old_logp, h_s = _logp(model, b, temperature)
            if ref is None and self.ref_kl_beta > 0 and self.trainable is not None:
                ref = without_adapters(params)
            ref_logp = None if ref is None else _logp(nnx.merge(graphdef, ref), b, temperature)[0]
            if teacher is None:
                return Scored(old_logp, None, adv, ref_logp)
            tmodel = nnx.merge(graphdef, teacher)
            h_t = completion_hidden(tmodel, tb.take(rows))
            g = losses.token_signal(student_hidden=h_s, teacher_hidden=h_t, student_unembed=model.unembed,
                                    teacher_unembed=tmodel.unembed, targets=b.targets, mode=self.signal_mode,
                                    top_k=self.top_k, gamma=self.gamma)
            return Scored(old_logp, g * b.tmask, adv, ref_logp)

        return self.programs.get("score", (), lambda: jax.jit(run), skip=3)

    def rl_update(self, *, use_signal: bool, use_sd: bool):
        """(state, batch, scored, mix, rows, sd_batch, sd_rows, sd_weight, on_policy) ->
        (state, metrics).

        One minibatch: `rows` of the rollout batch (and `sd_rows` of the self-distillation
        batch) taken on the device; `scored` is that minibatch's (`score`). sd rows with
        index -1 are padding (a static row count); they enter no loss; `sd_weight` weighs
        each kept row's NLL (`routing.minibatch_rows`). With `ref_kl_beta` > 0 the
        scored reference log-probs add the k3 KL to the loss.
        `on_policy` (a traced bool, so no second program): the parameters are still the
        rollout policy's (the first minibatch), and the old log-probs are this forward's own,
        detached: the ratio is exactly 1 whatever the dtype, where a second program's bf16
        rounding could otherwise differ by more than the 3e-4 clip band."""
        graphdef, temperature = self.graphdef, self.temperature

        use_ref = self.ref_kl_beta > 0

        def loss_fn(params, b, scored, mix, sd, sd_selected, sd_weight, on_policy):
            model = nnx.merge(graphdef, params)
            logp, _ = _logp(model, b, temperature)
            old_logp = jnp.where(on_policy, jax.lax.stop_gradient(logp), scored.old_logp)
            kw = {}
            if use_signal:
                kw.update(signal=scored.signal, mix=mix, signal_clip=self.signal_clip)
            if use_sd:
                sd_logp, _ = _logp(model, sd, 1.0)
                kw.update(sd_logp=sd_logp, sd_mask=sd.tmask, sd_selected=sd_selected, sd_weight=sd_weight,
                          alpha=self.alpha)
            if use_ref:
                kw.update(ref_logp=scored.ref_logp, ref_kl_beta=self.ref_kl_beta)
            return losses.visd_objective(logp=logp, old_logp=old_logp, advantages=scored.advantages, mask=b.tmask,
                                         clip_low=self.clip_low, clip_high=self.clip_high, **kw)

        def run(state, b, scored, mix, rows, sd, sd_rows, sd_weight, on_policy):
            sd_sel = None
            if use_sd:
                sd_sel = (sd_rows >= 0).astype(jnp.int32)
                sd = sd.take(jnp.maximum(sd_rows, 0))
            if use_ref and scored.ref_logp is None:
                raise ValueError("ref_kl_beta > 0 needs the reference's log-probs: score with state['ref']")
            train, frozen = split_params(state["params"], self.trainable)
            (loss, metrics), grads = jax.value_and_grad(
                lambda t, *a: loss_fn(merge_params(t, frozen), *a), has_aux=True)(
                train, b.take(rows), scored, mix, sd, sd_sel, sd_weight, on_policy)
            state, m = _apply_update(state, train, frozen, grads, loss, self.optimizer)
            return state, {**metrics, **m}

        return self.programs.get("rl_update", (use_signal, use_sd), lambda: jax.jit(
            run, donate_argnums=0, out_shardings=(self.shardings, None)))

    def sft_update(self, optimizer):
        """(state, batch) -> (state, metrics): token-mean NLL of the target tokens per sequence."""
        graphdef = self.graphdef

        def loss_fn(params, b):
            model = nnx.merge(graphdef, params)
            logp, _ = _logp(model, b, 1.0)
            rows = jnp.ones(logp.shape[:1], jnp.float32)
            return losses.prompted_rollout_nll(logp=logp, mask=b.tmask, selected=rows)

        def run(state, b):
            train, frozen = split_params(state["params"], self.trainable)
            (loss, metrics), grads = jax.value_and_grad(
                lambda t, bb: loss_fn(merge_params(t, frozen), bb), has_aux=True)(train, b)
            state, m = _apply_update(state, train, frozen, grads, loss, optimizer)
            return state, {"loss": loss, **metrics, **m}

        return self.programs.get("sft_update", id(optimizer), lambda: jax.jit(
            run, donate_argnums=0, out_shardings=(self.shardings, None)))

    def ema(self):
        """state -> state with teacher <- decay * teacher + (1 - decay) * student."""
        decay = self.ema_decay

        def run(state):
            return dict(state, teacher=ema_update(state["teacher"], state["params"], decay=decay))

        return self.programs.get("ema", (), lambda: jax.jit(run, donate_argnums=0, out_shardings=self.shardings))
