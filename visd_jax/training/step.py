"""The jitted pieces of a training step: scoring, the RL update, the SFT update, the EMA.

Each is built once per static signature (model graph, vision grids, completion length,
loss switches) by an lru_cache'd factory and jitted with the state's shardings as
explicit in/out shardings and the state donated, so an update rewrites the parameter and
optimizer buffers in place. The train state is a plain dict pytree:

  {"params": nnx.State, "opt": optax state, "teacher": nnx.State or None, "step": int32}

A non-finite loss or gradient norm leaves params and optimizer untouched ("skipped" = 1 in
the metrics, with the step number); the host logs it and training goes on.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from visd_jax import losses
from visd_jax.training.inputs import split_media
from visd_jax.training.schedules import ema_update


@dataclasses.dataclass(frozen=True)
class Seq:
    """A batch of prompt + completion sequences and their videos (host NumPy, or on device).

    ids/mask [B, L + T]; targets/tmask [B, T] are the completion tokens and their mask;
    pixels [N, patch_dim] with `grid` (static) and `seconds` per vision block.
    """

    ids: np.ndarray
    mask: np.ndarray
    targets: np.ndarray
    tmask: np.ndarray
    pixels: np.ndarray | None
    seconds: np.ndarray | None
    grid: tuple | None

    def arrays(self):
        return (self.ids, self.mask, self.targets, self.tmask, self.pixels, self.seconds)


def completion_hidden(model, ids, mask, pixels, seconds, grid, t: int):
    """Final hidden states at the positions that predict the last `t` tokens: [B, t, D].

    `grid` is static: a tuple of video blocks, or an `inputs.MediaGrid` when images are in."""
    length = ids.shape[1]
    # media only in the prompt: a vision token sampled into a completion stays text
    hidden = model(ids, attention_mask=mask, return_hidden=True, media_end=length - t,
                   **split_media(pixels, seconds, grid))
    return jax.lax.dynamic_slice_in_dim(hidden, length - t - 1, t, axis=1)


def _logp(model, seq_arrays, grid, temperature):
    ids, mask, targets, _, pixels, seconds = seq_arrays
    h = completion_hidden(model, ids, mask, pixels, seconds, grid, targets.shape[1])
    # logits / T == (h / T) @ W: the sampling temperature without materialising logits
    return losses.token_logprobs(hidden=h.astype(jnp.float32) / temperature,
                                 unembed=model.unembed, targets=targets), h


@functools.lru_cache(maxsize=64)
def score_fn(graphdef, grid, teacher_grid, temperature: float, signal_mode: str, top_k: int, gamma: float):
    """(params, teacher_or_None, seq, teacher_seq_or_None) -> (old_logp, signal_or_None).

    old_logp is the full-distribution log-prob under the rollout policy (recomputed
    rather than taken from the sampler, whose top-p truncation would bias the ratio).
    """

    @jax.jit
    def run(params, teacher, seq, tseq):
        model = nnx.merge(graphdef, params)
        old_logp, h_s = _logp(model, seq, grid, temperature)
        if teacher is None:
            return old_logp, None
        tmodel = nnx.merge(graphdef, teacher)
        tids, tmask, ttargets, _, tpix, tsec = tseq
        h_t = completion_hidden(tmodel, tids, tmask, tpix, tsec, teacher_grid, ttargets.shape[1])
        g = losses.token_signal(student_hidden=h_s, teacher_hidden=h_t,
                                student_unembed=model.unembed, teacher_unembed=tmodel.unembed,
                                targets=seq[2], mode=signal_mode, top_k=top_k, gamma=gamma)
        return old_logp, g * seq[3]

    return run


def _apply_update(state, grads, loss, optimizer):
    gnorm = optax.tree.norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(gnorm)
    updates, new_opt = optimizer.update(grads, state["opt"], state["params"])
    new_params = optax.apply_updates(state["params"], updates)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
    out = dict(state, params=keep(new_params, state["params"]), opt=keep(new_opt, state["opt"]),
               step=state["step"] + 1)
    return out, {"grad_norm": gnorm, "skipped": (~ok).astype(jnp.int32)}


class Steps:
    """The compiled update functions of one run: one per static signature, built on demand.

    Holds what every signature shares (model graph, optimizer, state shardings) so that the
    cache key is only what changes: the vision grids and which loss terms are on.
    """

    def __init__(self, graphdef, optimizer, shardings, *, temperature: float, clip_low: float,
                 clip_high: float, signal_clip: float, alpha: float, ema_decay: float):
        self.graphdef, self.optimizer, self.shardings = graphdef, optimizer, shardings
        self.temperature, self.clip_low, self.clip_high = temperature, clip_low, clip_high
        self.signal_clip, self.alpha, self.ema_decay = signal_clip, alpha, ema_decay
        self._cache: dict = {}

    def _get(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def rl_update(self, grid, sd_grid, *, use_signal: bool, use_sd: bool):
        """(state, seq, old_logp, adv, signal, mix, sd_seq, sd_selected) -> (state, metrics)."""
        graphdef, temperature = self.graphdef, self.temperature

        def loss_fn(params, seq, old_logp, adv, signal, mix, sd_seq, sd_selected):
            model = nnx.merge(graphdef, params)
            logp, _ = _logp(model, seq, grid, temperature)
            kw = {}
            if use_signal:
                kw.update(signal=signal, mix=mix, signal_clip=self.signal_clip)
            if use_sd:
                sd_logp, _ = _logp(model, sd_seq, sd_grid, 1.0)
                kw.update(sd_logp=sd_logp, sd_mask=sd_seq[3], sd_selected=sd_selected, alpha=self.alpha)
            return losses.visd_objective(logp=logp, old_logp=old_logp, advantages=adv, mask=seq[3],
                                         clip_low=self.clip_low, clip_high=self.clip_high, **kw)

        def run(state, seq, old_logp, adv, signal, mix, sd_seq, sd_selected):
            (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                state["params"], seq, old_logp, adv, signal, mix, sd_seq, sd_selected)
            state, m = _apply_update(state, grads, loss, self.optimizer)
            return state, {**metrics, **m}

        return self._get(("rl", grid, sd_grid, use_signal, use_sd),
                         lambda: jax.jit(run, donate_argnums=0, out_shardings=(self.shardings, None)))

    def sft_update(self, grid, optimizer):
        """(state, seq) -> (state, metrics): token-mean NLL of the target tokens per sequence."""
        graphdef = self.graphdef

        def loss_fn(params, seq):
            model = nnx.merge(graphdef, params)
            logp, _ = _logp(model, seq, grid, 1.0)
            rows = jnp.ones(logp.shape[:1], jnp.float32)
            return losses.prompted_rollout_nll(logp=logp, mask=seq[3], selected=rows)

        def run(state, seq):
            (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], seq)
            state, m = _apply_update(state, grads, loss, optimizer)
            return state, {"loss": loss, **metrics, **m}

        return self._get(("sft", grid, id(optimizer)),
                         lambda: jax.jit(run, donate_argnums=0, out_shardings=(self.shardings, None)))

    def ema(self):
        """state -> state with teacher <- decay * teacher + (1 - decay) * student."""
        decay = self.ema_decay

        def run(state):
            return dict(state, teacher=ema_update(state["teacher"], state["params"], decay=decay))

        return self._get(("ema",), lambda: jax.jit(run, donate_argnums=0, out_shardings=self.shardings))
