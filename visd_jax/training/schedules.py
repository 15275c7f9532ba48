"""Schedules and the optimizer: the VISD lambda ramp, the EMA teacher update, AdamW + cosine.

All pure; the trainer calls them inside the jitted step (lambda, EMA) or once (optimizer).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def visd_lambda(step, *, start: float = 0.5, steps: int = 600):
    """lambda_t = start * max(0, 1 - t / steps) (VISD: 0.5 -> 0 linearly over 600 steps).

    At and after `steps` it is exactly 0, which is when the trainer switches the judge and
    teacher off (plain RL afterwards). `steps=0` means never on.
    """
    if steps <= 0:
        return jnp.zeros((), jnp.float32)
    frac = jnp.clip(1.0 - jnp.asarray(step, jnp.float32) / steps, 0.0, 1.0)
    return jnp.float32(start) * frac


def teacher_active(step: int, *, steps: int) -> bool:
    """Host-side: is the VISD teacher still on at `step` (so its forward pass is worth running)."""
    return steps > 0 and step < steps


def ema_update(teacher, student, *, decay: float = 0.99):
    """theta_T <- decay * theta_T + (1 - decay) * theta_S, leaf by leaf, in the teacher's dtype.

    The blend is computed in float32 so a bf16 teacher does not lose the 1% step to rounding
    every update (0.99 * x + 0.01 * y in bf16 often rounds back to x).
    """
    def blend(t, s):
        # t + (1 - decay)(s - t): s - t is exact for close values, so the step has one rounding
        # (decay * t + ... rounds 0.99 t first, an error near the step's own size in float32)
        t32 = t.astype(jnp.float32)
        return (t32 + (1.0 - decay) * (s.astype(jnp.float32) - t32)).astype(t.dtype)

    return jax.tree.map(blend, teacher, student)


def make_optimizer(*, lr: float, total_steps: int, warmup_steps: int = 0, weight_decay: float = 0.01,
                   grad_clip: float = 5.0, b1: float = 0.9, b2: float = 0.999, end_lr_frac: float = 0.0,
                   mu_dtype=None):
    """AdamW on a (warmup +) cosine schedule after a global-norm clip (SPEC section 9).

    `mu_dtype` stores Adam's first moment (default: the parameters' dtype). bfloat16 saves
    2 bytes a parameter at no measurable cost to the update (the moment is a running mean
    whose own relative error, 2^-8, only scales the step); the second moment stays in the
    parameters' dtype, since its square root divides the step.
    """
    if lr <= 0 or total_steps < 1 or not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"optimizer: need lr > 0, total_steps >= 1 and 0 <= warmup_steps < total_steps; "
            f"got lr={lr}, total_steps={total_steps}, warmup_steps={warmup_steps}"
        )
    if warmup_steps:
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, lr, warmup_steps, total_steps, end_value=lr * end_lr_frac)
    else:
        schedule = optax.cosine_decay_schedule(lr, total_steps, alpha=end_lr_frac)
    return optax.chain(
        optax.clip_by_global_norm(grad_clip),
        optax.adamw(schedule, b1=b1, b2=b2, weight_decay=weight_decay, mu_dtype=mu_dtype),
    ), schedule
