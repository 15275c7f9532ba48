"""prompted_rollout_nll and magnitude_scaled_kl vs NumPy float64."""
import jax
import numpy as np
import pytest

from visd_jax.losses import magnitude_scaled_kl, prompted_rollout_nll

F32 = dict(rtol=2e-5, atol=2e-6)


def np_log_softmax(z):
    z = z.astype(np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_nll(logp, mask, selected):
    rows = [-(logp[i][mask[i]].astype(np.float64)).mean() for i in range(len(mask))
            if selected[i] and mask[i].any()]
    return float(np.mean(rows)) if rows else 0.0


def nll_case(seed):
    rng = np.random.default_rng(seed)
    b, t = 7, 6
    logp = np.log(rng.uniform(0.01, 1, size=(b, t))).astype(np.float32)
    lengths = rng.integers(1, t + 1, size=b)
    lengths[0], lengths[1] = 0, 1
    mask = np.arange(t)[None] < lengths[:, None]
    logp[~mask] = -np.inf
    return logp, mask


def test_nll_matches_float64_and_its_gradient():
    logp, mask = nll_case(0)
    selected = np.array([1, 1, 0, 1, 0, 1, 1], bool)  # row 0 is selected but empty
    f = jax.jit(lambda lp: prompted_rollout_nll(logp=lp, mask=mask, selected=selected))
    (loss, metrics), grad = jax.value_and_grad(f, has_aux=True)(logp)
    np.testing.assert_allclose(loss, np_nll(logp, mask, selected), **F32)
    use = selected & mask.any(1)
    ref_grad = np.where(mask & use[:, None], -1.0 / np.maximum(mask.sum(1, keepdims=True), 1), 0.0) / use.sum()
    np.testing.assert_allclose(grad, ref_grad, **F32)
    assert metrics["sd/num_selected"] == use.sum()


def test_nll_with_nothing_selected_is_exactly_zero_with_zero_gradient():
    logp, mask = nll_case(1)
    f = lambda lp: prompted_rollout_nll(logp=lp, mask=mask, selected=np.zeros(7, bool))[0]
    loss, grad = jax.jit(jax.value_and_grad(f))(logp)
    assert loss == 0.0 and np.all(np.asarray(grad) == 0.0)


def kl_case(seed):
    rng = np.random.default_rng(seed)
    b, t, v = 4, 5, 23
    zs = (rng.normal(size=(b, t, v)) * 2).astype(np.float32)
    zt = (rng.normal(size=(b, t, v)) * 2).astype(np.float32)
    mag = rng.uniform(0.8, 1.2, size=(b, t)).astype(np.float32)
    mask = rng.uniform(size=(b, t)) < 0.7
    mask[0] = False
    mask[1] = [True, False, False, False, False]
    return zs, zt, mag, mask


@pytest.mark.parametrize("direction", ["reverse", "forward"])
def test_kl_value_and_student_gradient_match_float64(direction):
    zs, zt, mag, mask = kl_case(2)
    ls, lt = np_log_softmax(zs), np_log_softmax(zt)
    ps, pt = np.exp(ls), np.exp(lt)
    if direction == "reverse":
        kl = (ps * (ls - lt)).sum(-1)
        dkl = ps * ((ls - lt) - kl[..., None])  # d KL(p_s || p_t) / d z_s
    else:
        kl = (pt * (lt - ls)).sum(-1)
        dkl = ps - pt  # d KL(p_t || p_s) / d z_s
    n_tok = mask.sum(1)
    valid = n_tok > 0
    coef = np.where(mask, mag, 0.0) / np.maximum(n_tok, 1)[:, None] / valid.sum()
    ref = (coef * kl).sum()
    f = jax.jit(lambda z: magnitude_scaled_kl(student_logits=z, teacher_logits=zt, magnitude=mag,
                                              mask=mask, direction=direction)[0])
    loss, grad = jax.value_and_grad(f)(zs)
    np.testing.assert_allclose(loss, ref, **F32)
    np.testing.assert_allclose(grad, coef[..., None] * dkl, **F32)
    # Teacher and magnitudes are detached.
    gt, gm = jax.grad(lambda t, m: magnitude_scaled_kl(student_logits=zs, teacher_logits=t, magnitude=m,
                                                       mask=mask, direction=direction)[0], argnums=(0, 1))(zt, mag)
    assert not np.any(np.asarray(gt)) and not np.any(np.asarray(gm))


def test_distill_bad_inputs():
    logp, mask = nll_case(0)
    with pytest.raises(ValueError, match=r"selected has 6 but logp has 7"):
        prompted_rollout_nll(logp=logp, mask=mask, selected=np.ones(6, bool))
    zs, zt, mag, mask = kl_case(0)
    with pytest.raises(ValueError, match=r"magnitude\[4, 4\], mask\[4, 5\]"):
        magnitude_scaled_kl(student_logits=zs, teacher_logits=zt, magnitude=mag[:, :4], mask=mask)
    with pytest.raises(ValueError, match=r"direction must be one of"):
        magnitude_scaled_kl(student_logits=zs, teacher_logits=zt, magnitude=mag, mask=mask, direction="js")


def test_weighted_nll_is_the_weighted_sum_and_keeps_the_mean_as_metric():
    logp, mask = nll_case(2)
    selected = np.array([1, 1, 1, 0, 1, 1, 0], bool)
    w = np.array([0.5, 0.25, 0.25, 9.0, 0.125, 0.125, 9.0], np.float32)  # unselected weights never count
    f = jax.jit(lambda lp: prompted_rollout_nll(logp=lp, mask=mask, selected=selected, weight=w))
    (loss, metrics), grad = jax.value_and_grad(f, has_aux=True)(logp)
    use = selected & mask.any(1)
    per = [-(logp[i][mask[i]].astype(np.float64)).mean() if use[i] else 0.0 for i in range(7)]
    np.testing.assert_allclose(loss, sum(float(w[i]) * per[i] for i in range(7)), **F32)
    np.testing.assert_allclose(metrics["sd/nll"], np_nll(logp, mask, selected), **F32)
    ref_grad = np.where(mask & use[:, None], -w[:, None] / np.maximum(mask.sum(1, keepdims=True), 1), 0.0)
    np.testing.assert_allclose(grad, ref_grad, **F32)


def test_reference_kl_is_trls_k3_and_its_gradient():
    from visd_jax.losses import reference_kl

    rng = np.random.default_rng(3)
    b, t = 5, 6
    logp = np.log(rng.uniform(0.01, 1, size=(b, t))).astype(np.float32)
    ref = np.log(rng.uniform(0.01, 1, size=(b, t))).astype(np.float32)
    ref[0, 0] = logp[0, 0] + 30.0  # past the clamp: x = 10, and no gradient there
    mask = np.arange(t)[None] < np.array([6, 3, 0, 1, 4])[:, None]
    logp[~mask] = -np.inf
    f = jax.jit(lambda lp: reference_kl(logp=lp, ref_logp=ref, mask=mask))
    (kl, metrics), grad = jax.value_and_grad(f, has_aux=True)(logp)
    x = np.clip(ref.astype(np.float64) - np.where(mask, logp, 0.0), -10, 10)
    k3 = np.exp(x) - x - 1
    rows = [k3[i][mask[i]].mean() for i in range(b) if mask[i].any()]
    np.testing.assert_allclose(kl, np.mean(rows), rtol=2e-5)
    # d k3 / d logp = 1 - exp(x) inside the clamp, 0 where clamped
    inside = mask & (np.abs(ref.astype(np.float64) - np.where(mask, logp, 0.0)) < 10)
    ref_grad = np.where(inside, (1 - np.exp(x)) / np.maximum(mask.sum(1, keepdims=True), 1), 0.0) / len(rows)
    np.testing.assert_allclose(grad, ref_grad, rtol=2e-5, atol=1e-7)
    assert float(metrics["ref_kl/kl_max"]) == pytest.approx(np.exp(10) - 11, rel=1e-5)
    # the policy equal to its reference: KL exactly 0
    same = jax.jit(lambda lp: reference_kl(logp=lp, ref_logp=lp, mask=mask)[0])(logp)
    assert float(same) == 0.0
