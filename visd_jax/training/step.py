"""The jitted pieces of a training step: scoring, the RL update, the SFT update, the EMA.

Each takes whole `RolloutBatch`es and is built once per loss switch in the run's
`Programs` cache; jit compiles it once per batch bucket. Updates are jitted with the
state's shardings as explicit out shardings and the state donated, so an update rewrites
the parameter and optimizer buffers in place. The train state is a plain dict pytree:

  {"params": nnx.State, "opt": optax state, "teacher": nnx.State or None, "step": int32}

A non-finite loss or gradient norm leaves params and optimizer untouched ("skipped" = 1 in
the metrics, with the step number); the host logs it and training goes on.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from visd_jax import losses
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


def _apply_update(state, grads, loss, optimizer):
    gnorm = optax.tree.norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(gnorm)
    updates, new_opt = optimizer.update(grads, state["opt"], state["params"])
    new_params = optax.apply_updates(state["params"], updates)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
    out = dict(state, params=keep(new_params, state["params"]), opt=keep(new_opt, state["opt"]),
               step=state["step"] + 1)
    return out, {"grad_norm": gnorm, "skipped": (~ok).astype(jnp.int32)}


def init_state(params, optimizer, *, teacher: bool, teacher_dtype=None) -> dict:
    """The train state of `params` (pure: jitted by the AOT fit check, eager in the trainer).

    `teacher_dtype` stores the EMA teacher (default: the parameters' dtype). A bfloat16
    teacher halves its memory but cannot follow a student trained at lr ~1e-6: its 1% step
    toward the student is far below a bf16 ulp and rounds away (tests/training/test_mixed_precision.py).
    """
    def cast(x):
        return x.astype(teacher_dtype) if teacher_dtype is not None and jnp.issubdtype(x.dtype, jnp.floating) \
            else jnp.copy(x)

    return {"params": params, "opt": optimizer.init(params),
            "teacher": jax.tree.map(cast, params) if teacher else None, "step": jnp.zeros((), jnp.int32)}


class Steps:
    """The jitted programs of a run's updates, built on demand in one `Programs` cache.

    Holds what every program shares (model graph, optimizer, state shardings, loss
    settings) so that a program's static key is only which loss terms are on; the batch
    shapes come from the buckets and jit keys on them.
    """

    def __init__(self, graphdef, optimizer, shardings, *, temperature: float, clip_low: float,
                 clip_high: float, signal_clip: float, alpha: float, ema_decay: float, adv_eps: float = 1e-6,
                 signal_mode: str = "topk", top_k: int = 16, gamma: float = 0.0, programs: Programs | None = None):
        self.graphdef, self.optimizer, self.shardings = graphdef, optimizer, shardings
        self.temperature, self.clip_low, self.clip_high = temperature, clip_low, clip_high
        self.signal_clip, self.alpha, self.ema_decay, self.adv_eps = signal_clip, alpha, ema_decay, adv_eps
        self.signal_mode, self.top_k, self.gamma = signal_mode, top_k, gamma
        self.programs = programs or Programs()

    @classmethod
    def from_config(cls, cfg, graphdef, optimizer, shardings, programs: Programs | None = None) -> "Steps":
        """The run's programs with the loss settings of `cfg` (the trainer and the fit check)."""
        r, v = cfg.rl, cfg.visd
        return cls(graphdef, optimizer, shardings, temperature=r.temperature, clip_low=r.clip_low,
                   clip_high=r.clip_high, signal_clip=v.clip, alpha=cfg.coach.alpha, ema_decay=v.ema_decay,
                   adv_eps=r.adv_eps, signal_mode=v.signal_mode, top_k=int(v.top_k), gamma=float(v.gamma),
                   programs=programs)

    def score(self):
        """(params, teacher_or_None, batch, teacher_batch_or_None, rewards [N, G], rows [R]) ->
        (old_logp [R, T], signal [R, T] or None, advantages [R]) of one minibatch's rows.

        Scored per minibatch, with the rows the update will take, so the forward pass has the
        update's shapes and only a minibatch's activations live at once; every minibatch is
        scored before the first update (the rollout policy's log-probs). old_logp is the
        full-distribution log-prob (not the sampler's, whose top-p truncation would bias the
        ratio)."""
        graphdef, temperature = self.graphdef, self.temperature

        def run(params, teacher, b, tb, rewards, rows):
            adv = losses.group_advantages(rewards=rewards.astype(jnp.float32), eps=self.adv_eps).reshape(-1)[rows]
            b = b.take(rows)
            model = nnx.merge(graphdef, params)
            old_logp, h_s = _logp(model, b, temperature)
            if teacher is None:
                return old_logp, None, adv
            tmodel = nnx.merge(graphdef, teacher)
            h_t = completion_hidden(tmodel, tb.take(rows))
            g = losses.token_signal(student_hidden=h_s, teacher_hidden=h_t, student_unembed=model.unembed,
                                    teacher_unembed=tmodel.unembed, targets=b.targets, mode=self.signal_mode,
                                    top_k=self.top_k, gamma=self.gamma)
            return old_logp, g * b.tmask, adv

        return self.programs.get("score", (), lambda: jax.jit(run), skip=2)

    def rl_update(self, *, use_signal: bool, use_sd: bool):
        """(state, batch, old_logp, adv, signal, mix, rows, sd_batch, sd_rows, on_policy) ->
        (state, metrics).

        One minibatch: `rows` of the rollout batch (and `sd_rows` of the self-distillation
        batch) taken on the device; old_logp, adv and signal are that minibatch's (`score`).
        sd rows with index -1 are padding (a static row count); they enter no loss.
        `on_policy` (a traced bool, so no second program): the parameters are still the
        rollout policy's (the first minibatch), and the old log-probs are this forward's own,
        detached: the ratio is exactly 1 whatever the dtype, where a second program's bf16
        rounding could otherwise differ by more than the 3e-4 clip band."""
        graphdef, temperature = self.graphdef, self.temperature

        def loss_fn(params, b, old_logp, adv, signal, mix, sd, sd_selected, on_policy):
            model = nnx.merge(graphdef, params)
            logp, _ = _logp(model, b, temperature)
            old_logp = jnp.where(on_policy, jax.lax.stop_gradient(logp), old_logp)
            kw = {}
            if use_signal:
                kw.update(signal=signal, mix=mix, signal_clip=self.signal_clip)
            if use_sd:
                sd_logp, _ = _logp(model, sd, 1.0)
                kw.update(sd_logp=sd_logp, sd_mask=sd.tmask, sd_selected=sd_selected, alpha=self.alpha)
            return losses.visd_objective(logp=logp, old_logp=old_logp, advantages=adv, mask=b.tmask,
                                         clip_low=self.clip_low, clip_high=self.clip_high, **kw)

        def run(state, b, old_logp, adv, signal, mix, rows, sd, sd_rows, on_policy):
            sd_sel = None
            if use_sd:
                sd_sel = (sd_rows >= 0).astype(jnp.int32)
                sd = sd.take(jnp.maximum(sd_rows, 0))
            (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                state["params"], b.take(rows), old_logp, adv, signal, mix, sd, sd_sel, on_policy)
            state, m = _apply_update(state, grads, loss, self.optimizer)
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
            (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], b)
            state, m = _apply_update(state, grads, loss, optimizer)
            return state, {"loss": loss, **metrics, **m}

        return self.programs.get("sft_update", id(optimizer), lambda: jax.jit(
            run, donate_argnums=0, out_shardings=(self.shardings, None)))

    def ema(self):
        """state -> state with teacher <- decay * teacher + (1 - decay) * student."""
        decay = self.ema_decay

        def run(state):
            return dict(state, teacher=ema_update(state["teacher"], state["params"], decay=decay))

        return self.programs.get("ema", (), lambda: jax.jit(run, donate_argnums=0, out_shardings=self.shardings))
