"""group_advantages and direction_magnitude_advantages vs NumPy float64."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visd_jax.losses import direction_magnitude_advantages, group_advantages

F32 = dict(rtol=2e-5, atol=2e-6)


def np_group(r, eps, ddof):
    r = r.astype(np.float64)
    return (r - r.mean(1, keepdims=True)) / (r.std(1, ddof=ddof, keepdims=True) + eps)


@pytest.mark.parametrize("ddof", [0, 1])
def test_group_advantages_match_float64(ddof):
    rng = np.random.default_rng(ddof)
    r = rng.uniform(0, 3, size=(6, 4)).astype(np.float32)
    out = jax.jit(lambda x: group_advantages(rewards=x, ddof=ddof))(r)
    np.testing.assert_allclose(out, np_group(r, 1e-4, ddof), **F32)


def test_equal_reward_groups_give_exact_zeros_never_nan():
    # 0.1 * 3 is not exact in binary, so mean - value is rounding noise, not zero.
    r = np.array([[0.1, 0.1, 0.1], [2.21, 2.21, 2.21], [0.0, 1.0, 0.5], [7.0, 7.0, 7.0]], np.float32)
    out = np.asarray(jax.jit(lambda x: group_advantages(rewards=x))(r))
    assert np.all(out[[0, 1, 3]] == 0.0) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out[2], np_group(r[2:3], 1e-4, 1)[0], **F32)


def test_group_advantages_bf16_rewards_accumulate_in_float32():
    rng = np.random.default_rng(3)
    r = jnp.asarray(rng.uniform(0, 3, size=(5, 8)), jnp.bfloat16)
    out = group_advantages(rewards=r)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, np_group(np.asarray(r, np.float64), 1e-4, 1), **F32)


@pytest.mark.parametrize(
    "rewards, msg",
    [(np.zeros((4, 1), np.float32), r"G=1 .* needs G > 1"),
     (np.zeros(4, np.float32), r"rewards must have shape \[N, G\].*\(4,\)"),
     (np.zeros((2, 4), np.int32), r"rewards must be a floating-point")],
)
def test_group_advantages_bad_input(rewards, msg):
    with pytest.raises(ValueError, match=msg):
        group_advantages(rewards=rewards)


def np_direction_magnitude(a, g, m, c, mix):
    a = a.astype(np.float64)
    a_t = np.broadcast_to(a[:, None], g.shape) if a.ndim == 1 else a
    w = np.clip(np.exp(np.sign(a_t) * g.astype(np.float64)), 1 - c, 1 + c)
    w = np.where(m, w, 1.0)
    return a_t * ((1 - mix) + mix * w), w


def _dm_case(seed):
    rng = np.random.default_rng(seed)
    b, t = 6, 9
    a = rng.normal(size=b).astype(np.float32)
    a[2] = 0.0
    g = (rng.normal(size=(b, t)) * 0.5).astype(np.float32)
    m = rng.uniform(size=(b, t)) < 0.7
    m[0] = False
    return a, g, m


@pytest.mark.parametrize("mix", [0.0, 0.3, 0.5, 1.0])
def test_direction_magnitude_matches_float64(mix):
    a, g, m = _dm_case(int(mix * 10))
    fn = jax.jit(lambda a, g, m, mix: direction_magnitude_advantages(advantages=a, signal=g, mask=m, mix=mix))
    adv_t, w, metrics = fn(a, g, m, mix)
    ref_adv, ref_w = np_direction_magnitude(a, g, m, 0.2, mix)
    np.testing.assert_allclose(adv_t, ref_adv, **F32)
    np.testing.assert_allclose(w, ref_w, **F32)
    assert np.all(np.asarray(w)[~m] == 1.0)
    # Direction comes from the rollout: the sign never flips.
    assert np.all(np.sign(np.asarray(adv_t)) == np.sign(a)[:, None])
    np.testing.assert_allclose(metrics["visd/weight_mean"], ref_w[m].mean(), **F32)
    raw = np.exp(np.sign(a)[:, None] * g)
    np.testing.assert_allclose(metrics["visd/weight_clip_frac_high"], (raw > 1.2)[m].mean(), **F32)


def test_mix_zero_is_exactly_the_rollout_advantage_and_signal_is_detached():
    a, g, m = _dm_case(9)
    adv_t, _, _ = direction_magnitude_advantages(advantages=a, signal=g, mask=m, mix=0.0)
    assert np.array_equal(np.asarray(adv_t), np.broadcast_to(a[:, None], g.shape))
    dg = jax.grad(lambda g: jnp.sum(direction_magnitude_advantages(advantages=a, signal=g, mask=m, mix=0.5)[0]))(g)
    assert np.all(np.asarray(dg) == 0.0)


def test_per_token_advantages_and_shape_errors():
    a, g, m = _dm_case(4)
    a_t = np.random.default_rng(0).normal(size=g.shape).astype(np.float32)
    adv_t, w, _ = direction_magnitude_advantages(advantages=a_t, signal=g, mask=m, mix=0.5)
    ref_adv, ref_w = np_direction_magnitude(a_t, g, m, 0.2, 0.5)
    np.testing.assert_allclose(adv_t, ref_adv, **F32)
    with pytest.raises(ValueError, match=r"advantages has 5 but mask has 6"):
        direction_magnitude_advantages(advantages=a[:5], signal=g, mask=m, mix=0.5)
    with pytest.raises(ValueError, match=r"signal\[6, 8\], mask\[6, 9\]"):
        direction_magnitude_advantages(advantages=a, signal=g[:, :8], mask=m, mix=0.5)
