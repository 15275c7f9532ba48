import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visd_jax.training.routing import hard_mask, select_for_distillation
from visd_jax.training.schedules import ema_update, make_optimizer, teacher_active, visd_lambda


def test_lambda_ramp_matches_the_paper_schedule():
    got = [float(visd_lambda(t, start=0.5, steps=600)) for t in (0, 150, 300, 599, 600, 1000)]
    want = [0.5, 0.375, 0.25, 0.5 * (1 - 599 / 600), 0.0, 0.0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert float(visd_lambda(5, steps=0)) == 0.0
    assert teacher_active(599, steps=600) and not teacher_active(600, steps=600)
    # jittable with a traced step
    assert float(jax.jit(lambda t: visd_lambda(t, steps=600))(300)) == pytest.approx(0.25)


def test_ema_update_float64_reference_and_bf16_keeps_the_step():
    t = {"w": jnp.array([1.0, 2.0, -3.0]), "b": jnp.array(4.0)}
    s = {"w": jnp.array([0.0, 1.0, 3.0]), "b": jnp.array(-4.0)}
    out = ema_update(t, s, decay=0.99)
    np.testing.assert_allclose(np.asarray(out["w"]), 0.99 * np.array([1, 2, -3.0]) + 0.01 * np.array([0, 1, 3.0]), rtol=1e-6)
    # bf16: 0.99*1 + 0.01*1.5 = 1.005 -> rounds to 1.0 in bf16 arithmetic, but after several steps the
    # float32 blend moves the teacher while a bf16 blend would stay put forever
    tb, sb = jnp.ones((4,), jnp.bfloat16), jnp.full((4,), 3.0, jnp.bfloat16)
    for _ in range(10):
        tb = ema_update(tb, sb, decay=0.99)
    assert tb.dtype == jnp.bfloat16 and float(tb[0]) > 1.0


def test_optimizer_schedule_and_clip():
    opt, sched = make_optimizer(lr=1e-3, total_steps=10, weight_decay=0.0, grad_clip=1.0)
    assert float(sched(0)) == pytest.approx(1e-3) and float(sched(10)) == pytest.approx(0.0)
    params = {"w": jnp.zeros((3,))}
    state = opt.init(params)
    upd, _ = opt.update({"w": jnp.array([300.0, 400.0, 0.0])}, state, params)
    # Adam's first step is lr * sign(g) whatever the scale; the clip must not produce NaN
    np.testing.assert_allclose(np.asarray(upd["w"]), [-1e-3, -1e-3, 0.0], rtol=1e-4, atol=1e-9)
    with pytest.raises(ValueError, match="lr > 0"):
        make_optimizer(lr=0.0, total_steps=10)
    opt_w, sched_w = make_optimizer(lr=1.0, total_steps=10, warmup_steps=5)
    assert float(sched_w(0)) == 0.0 and float(sched_w(5)) == pytest.approx(1.0)


def test_hard_mask_threshold():
    r = np.array([[3.0, 3.0, 3.0, 1.0], [0.0, 0.5, 0.5, 0.0]])  # means 2.5, 0.25
    np.testing.assert_array_equal(hard_mask(r, threshold=2.21), [False, True])
    with pytest.raises(ValueError, match=r"\[N, G\]"):
        hard_mask(np.zeros(4), threshold=1.0)


def test_candidate_rules_and_top_n():
    raw = {"ans_acc": np.array([0.0, 1.0, 0.0, 0.0]), "ans_tiou": np.zeros(4), "ans_viou": np.zeros(4),
           "total": np.array([1.0, 1.0, 1.0, 1.0])}  # mean ans_acc 0.25, answer sum 0.25, total 1.0
    p = {"ans_acc": np.array([0.0, 1.0, 1.0, 0.0]), "ans_tiou": np.array([0.9, 0.0, 0.3, 0.5]),
         "ans_viou": np.zeros(4), "total": np.array([2.0, 0.5, 3.0, 2.0])}  # answer sums .9 1 1.3 .5
    # ans_acc (release): ans_acc beats 0.25 -> {1, 2}; ranked by ans_acc, tie broken by index
    got = select_for_distillation(raw_G=raw, prompted_G=p, top_n=1, rule="ans_acc")
    np.testing.assert_array_equal(got, [False, True, False, False])
    got = select_for_distillation(raw_G=raw, prompted_G=p, top_n=2, rule="ans_acc")
    np.testing.assert_array_equal(got, [False, True, True, False])
    # answer_sum: every sum beats 0.25 -> top-2 by sum: 2 (1.3), 1 (1.0)
    got = select_for_distillation(raw_G=raw, prompted_G=p, top_n=2, rule="answer_sum")
    np.testing.assert_array_equal(got, [False, True, True, False])
    # total: beats 1.0 -> {0, 2, 3}; top-2 by answer sum -> 2 (1.3), 0 (0.9)
    got = select_for_distillation(raw_G=raw, prompted_G=p, top_n=2, rule="total")
    np.testing.assert_array_equal(got, [True, False, True, False])
    # a temporal-QA-like win (tIoU up, ans_acc not): distilled under answer_sum, not the release's rule
    tq = {**p, "ans_acc": np.zeros(4)}
    assert not select_for_distillation(raw_G=raw, prompted_G=tq, rule="ans_acc").any()
    assert select_for_distillation(raw_G=raw, prompted_G=tq, rule="answer_sum").sum() == 2
    with pytest.raises(ValueError, match="candidate rule"):
        select_for_distillation(raw_G=raw, prompted_G=p, rule="answer")
