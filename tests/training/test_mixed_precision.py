"""bf16 training that keeps its updates: float32 master weights under bfloat16 compute move the
parameters as a float32 run does at the release's lr 1e-6, where bf16 parameters do not move
at all; the EMA teacher follows the student by its 1%; the on-policy minibatch's ratio is 1.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from visd_jax.models import Qwen25VL, Qwen25VLConfig
from visd_jax.models.canvas import token_layout
from visd_jax.training.batch import RolloutBatch
from visd_jax.training.schedules import ema_update, make_optimizer
from visd_jax.training.step import Steps, init_state

L, T, B = 12, 8, 4


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 1000, (B, L + T)).astype(np.int32)
    mask = np.ones((B, L + T), np.int32)
    cfg = Qwen25VLConfig.preset("tiny")
    pos, src = token_layout(ids, mask, [[]] * B, [], None, video_token_id=cfg.video_token_id,
                            image_token_id=cfg.image_token_id, merge=2, tokens_per_second=2, media_end=L)
    return RolloutBatch(ids, mask, ids[:, L:].copy(), np.ones((B, T), np.int32), pos, src, None)


def _steps(param_dtype, dtype, mu_dtype, *, lr=1e-6, total=20):
    model = Qwen25VL.create(Qwen25VLConfig.preset("small"), seed=0, param_dtype=param_dtype, dtype=dtype)
    graphdef, params = nnx.split(model)
    opt, _ = make_optimizer(lr=lr, total_steps=total, weight_decay=0.0, grad_clip=1e9, mu_dtype=mu_dtype)
    state = init_state(params, opt, teacher=False)
    steps = Steps(graphdef, opt, jax.tree.map(lambda x: x.sharding, state), temperature=1.0, clip_low=3e-4,
                  clip_high=4e-4, signal_clip=0.2, alpha=0.1, ema_decay=0.99)
    return steps, opt, state


def _update_norm(param_dtype, dtype, mu_dtype, n=20):
    steps, opt, state = _steps(param_dtype, dtype, mu_dtype, total=n)
    start = jax.tree.map(lambda x: np.asarray(x, np.float64), state["params"])
    fn, b = steps.sft_update(opt), _batch()
    for _ in range(n):
        state, _ = fn(state, b)
    moved = jax.tree.map(lambda x, s: np.asarray(x, np.float64) - s, state["params"], start)
    return np.sqrt(sum(np.sum(d * d) for d in jax.tree.leaves(moved))), moved


@pytest.mark.slow
def test_master_weights_keep_lr_1e6_updates_that_bf16_parameters_round_away():
    ref, ref_moved = _update_norm(jnp.float32, jnp.float32, None)
    mixed, mixed_moved = _update_norm(jnp.float32, jnp.bfloat16, jnp.bfloat16)
    pure_bf16, _ = _update_norm(jnp.bfloat16, jnp.bfloat16, None)
    assert ref > 0
    # 20 AdamW steps of ~1e-6 per parameter: the mixed run moves as far, in the same direction
    assert 0.9 <= mixed / ref <= 1.1, mixed / ref
    a, b = (np.concatenate([d.ravel() for d in jax.tree.leaves(t)]) for t in (ref_moved, mixed_moved))
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.9
    # bf16 parameters: nearly every update is below half an ulp and is lost
    assert pure_bf16 < 0.2 * ref, pure_bf16 / ref


def test_float32_teacher_follows_the_student_by_its_ema_step_and_bf16_cannot():
    rng = np.random.default_rng(0)
    teacher = {"w": jnp.asarray(rng.normal(0, 0.02, (256, 64)), jnp.float32)}
    # the student ~100 lr-1e-6 Adam steps ahead (the EMA's lag): far below a bf16 ulp at 0.02
    student = {"w": teacher["w"] + jnp.asarray(rng.choice([-1.0, 1.0], (256, 64)) * 1e-4, jnp.float32)}
    new = ema_update(teacher, student, decay=0.99)
    want = 0.01 * (np.asarray(student["w"], np.float64) - np.asarray(teacher["w"], np.float64))
    got = np.asarray(new["w"], np.float64) - np.asarray(teacher["w"], np.float64)
    np.testing.assert_allclose(got, want, rtol=2e-3)
    half = {k: v.astype(jnp.bfloat16) for k, v in teacher.items()}
    moved = ema_update(half, student, decay=0.99)["w"].astype(jnp.float32) - half["w"].astype(jnp.float32)
    # only weights within ~1e-4 of zero (where the ulp is small enough) move at all: why
    # visd.teacher_dtype defaults to the master weights' dtype
    assert float(jnp.mean(moved != 0)) < 0.05


@pytest.mark.slow
def test_the_on_policy_minibatch_has_ratio_one_and_no_clipping_in_bf16():
    steps, _, state = _steps(jnp.float32, jnp.bfloat16, jnp.bfloat16, lr=1e-3)
    b, rows = _batch(), np.arange(2, dtype=np.int32)
    rewards = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    scored = steps.score()(state["params"], None, None, b, None, rewards, rows)
    fn = steps.rl_update(use_signal=False, use_sd=False)
    state, m = fn(state, b, scored, np.float32(0), rows, None, None, None, np.bool_(True))
    m = jax.device_get(m)
    assert m["gspo/ratio_min"] == m["gspo/ratio_max"] == 1.0
    assert m["gspo/clip_frac_low"] == m["gspo/clip_frac_high"] == 0.0
    assert m["skipped"] == 0
    # the next minibatch, after that update, is off-policy: its ratio moves and may clip
    rows2 = np.arange(2, 4, dtype=np.int32)
    sc2 = steps.score()(jax.tree.map(jnp.copy, state["params"]), None, None, b, None, rewards, rows2)
    state, m2 = fn(state, b, sc2._replace(old_logp=sc2.old_logp + 0.01), np.float32(0), rows2, None, None, None,
                   np.bool_(False))
    assert jax.device_get(m2)["gspo/ratio_max"] != 1.0
