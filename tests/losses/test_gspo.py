"""gspo_loss (sequence and token level) vs an independent NumPy float64 reference."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visd_jax.losses import gspo_from_terms, gspo_loss, gspo_terms, merge_terms

F32 = dict(rtol=2e-5, atol=2e-6)
CL, CH = 3e-4, 4e-4


def np_gspo(logp, old, adv, mask, level, cl=CL, ch=CH):
    """(loss, d loss / d logp, metrics) in float64, written from SPEC section 4."""
    m = mask.astype(np.float64)
    n_tok = m.sum(1)
    valid = n_tok > 0
    lr = np.where(m > 0, logp.astype(np.float64) - old, 0.0)
    s = np.exp(lr.sum(1) / np.maximum(n_tok, 1))
    a = adv.astype(np.float64)
    a_t = np.broadcast_to(a[:, None], m.shape) if a.ndim == 1 else a
    n = valid.sum()
    grad = np.zeros(m.shape)
    low_hits, high_hits, units = 0.0, 0.0, 0.0
    per_seq = np.zeros(len(m))
    for i in range(len(m)):
        if not valid[i]:
            continue
        lo, hi = 1 - cl, 1 + ch
        sc = min(max(s[i], lo), hi)
        if level == "sequence":
            per_seq[i] = -min(s[i] * a[i], sc * a[i])
            binds = (s[i] < lo and a[i] < 0) or (s[i] > hi and a[i] > 0)
            low_hits += s[i] < lo and a[i] < 0
            high_hits += s[i] > hi and a[i] > 0
            units += 1
            if not binds:
                grad[i] = -a[i] * s[i] * m[i] / n_tok[i]
        else:
            for t in range(m.shape[1]):
                if m[i, t] == 0:
                    continue
                at = a_t[i, t]
                per_seq[i] += -min(s[i] * at, sc * at) / n_tok[i]
                binds = (s[i] < lo and at < 0) or (s[i] > hi and at > 0)
                low_hits += s[i] < lo and at < 0
                high_hits += s[i] > hi and at > 0
                units += 1
                if not binds:
                    grad[i, t] = -at * s[i] / n_tok[i]
    loss = per_seq[valid].sum() / n if n else 0.0
    grad = grad / n if n else grad
    metrics = {
        "gspo/clip_frac_low": low_hits / units if units else 0.0,
        "gspo/clip_frac_high": high_hits / units if units else 0.0,
        "gspo/ratio_mean": s[valid].mean() if n else 1.0,
        "gspo/ratio_min": s[valid].min() if n else 1.0,
        "gspo/ratio_max": s[valid].max() if n else 1.0,
        "gspo/num_sequences": float(n),
    }
    return loss, grad, metrics


def make_batch(seed, b=10, t=7):
    """Empty row, length-1 row, ratios far outside the clip band (old_logp from another
    random policy), a few rows inside it, mixed-sign and zero advantages, junk padding."""
    rng = np.random.default_rng(seed)
    logp = np.log(rng.uniform(0.05, 1.0, size=(b, t)))
    old = np.log(rng.uniform(0.05, 1.0, size=(b, t)))
    inside = [2, 3, 4]
    old[inside] = logp[inside] + rng.normal(scale=1e-5, size=(len(inside), t))
    lengths = rng.integers(1, t + 1, size=b)
    lengths[0], lengths[1] = 0, 1
    mask = np.arange(t)[None, :] < lengths[:, None]
    adv = rng.normal(size=b)
    adv[5] = 0.0
    adv[2], adv[3] = 1.3, -0.7
    # One row surely above the band with A > 0 and one surely below with A < 0.
    old[6], adv[6] = logp[6] - 1.0, 0.8
    old[7], adv[7] = logp[7] + 1.0, -0.9
    logp = np.where(mask, logp, -np.inf)  # padding may hold anything
    return logp.astype(np.float32), old.astype(np.float32), adv.astype(np.float32), mask


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("level", ["sequence", "token"])
def test_value_grad_metrics_match_float64(seed, level):
    logp, old, adv, mask = make_batch(seed)
    ref_loss, ref_grad, ref_metrics = np_gspo(np.where(mask, logp, 0), old, adv, mask, level)

    def f(lp):
        return gspo_loss(logp=lp, old_logp=old, advantages=adv, mask=mask, level=level)

    (loss, metrics), grad = jax.jit(jax.value_and_grad(f, has_aux=True))(jnp.asarray(logp))
    np.testing.assert_allclose(loss, ref_loss, **F32)
    np.testing.assert_allclose(grad, ref_grad, **F32)
    for k, v in ref_metrics.items():
        np.testing.assert_allclose(metrics[k], v, **F32, err_msg=k)
    assert metrics["gspo/nonfinite"] == 0.0
    # The data must exercise both sides of the clip and the in-band branch.
    assert ref_metrics["gspo/clip_frac_low"] > 0 and ref_metrics["gspo/clip_frac_high"] > 0
    assert np.any(ref_grad != 0)


def test_token_advantages_per_token_match_float64():
    logp, old, _, mask = make_batch(7)
    rng = np.random.default_rng(7)
    adv_t = rng.normal(size=mask.shape).astype(np.float32)
    ref_loss, ref_grad, ref_metrics = np_gspo(np.where(mask, logp, 0), old, adv_t, mask, "token")
    (loss, metrics), grad = jax.jit(jax.value_and_grad(
        lambda lp: gspo_loss(logp=lp, old_logp=old, advantages=adv_t, mask=mask, level="token"),
        has_aux=True))(jnp.asarray(logp))
    np.testing.assert_allclose(loss, ref_loss, **F32)
    np.testing.assert_allclose(grad, ref_grad, **F32)
    np.testing.assert_allclose(metrics["gspo/clip_frac_high"], ref_metrics["gspo/clip_frac_high"], **F32)


@pytest.mark.parametrize("seed", [3, 4])
def test_sequence_and_token_level_agree_in_value_and_gradient(seed):
    logp, old, adv, mask = make_batch(seed)

    def f(lp, level):
        return gspo_loss(logp=lp, old_logp=old, advantages=adv, mask=mask, level=level)[0]

    vg = jax.jit(jax.value_and_grad(f), static_argnums=1)
    vs, gs = vg(jnp.asarray(logp), "sequence")
    vt, gt = vg(jnp.asarray(logp), "token")
    np.testing.assert_allclose(vt, vs, **F32)
    np.testing.assert_allclose(gt, gs, **F32)


def test_all_empty_masks_give_zero_loss_and_zero_gradient():
    logp, old, adv, mask = make_batch(0)
    empty = np.zeros_like(mask)
    (loss, metrics), grad = jax.jit(jax.value_and_grad(
        lambda lp: gspo_loss(logp=lp, old_logp=old, advantages=adv, mask=empty), has_aux=True
    ))(jnp.asarray(logp))
    assert loss == 0.0 and np.all(grad == 0.0)
    assert metrics["gspo/ratio_mean"] == 1.0 and metrics["gspo/nonfinite"] == 0.0


def test_nonfinite_flag_sees_unmasked_nan_only():
    logp, old, adv, mask = make_batch(1)
    flag = jax.jit(lambda lp: gspo_loss(logp=lp, old_logp=old, advantages=adv, mask=mask)[1]["gspo/nonfinite"])
    bad = logp.copy()
    bad[~mask] = np.nan  # padding: ignored
    assert flag(bad) == 0.0
    bad[1, 0] = np.nan  # row 1 has exactly one real token
    assert flag(bad) == 1.0


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_micro_batches_merge_to_the_full_batch(level):
    logp, old, adv, mask = make_batch(5, b=12)
    parts = [slice(0, 4), slice(4, 8), slice(8, 12)]  # equal sizes: one compile

    @jax.jit
    def terms_of(lp, o, a, m):
        return gspo_terms(logp=lp, old_logp=o, advantages=a, mask=m, level=level)

    @jax.jit
    def full_loss(lp):
        return gspo_loss(logp=lp, old_logp=old, advantages=adv, mask=mask, level=level)

    @jax.jit
    def part_grad(lp, o, a, m, den):
        return jax.grad(lambda x: gspo_from_terms(terms_of(x, o, a, m), denominators=den)[0])(lp)

    (loss_full, metrics_full), grad_full = jax.value_and_grad(full_loss, has_aux=True)(jnp.asarray(logp))
    terms = [terms_of(logp[p], old[p], adv[p], mask[p]) for p in parts]
    merged = merge_terms(*terms)
    loss, metrics = gspo_from_terms(merged)
    np.testing.assert_allclose(loss, loss_full, **F32)
    for k in metrics_full:
        np.testing.assert_allclose(metrics[k], metrics_full[k], **F32, err_msg=k)
    # Gradient accumulation: each part divided by the full batch's sequence count.
    acc = np.concatenate([part_grad(logp[p], old[p], adv[p], mask[p], merged) for p in parts])
    np.testing.assert_allclose(acc, grad_full, **F32)


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(old_logp=np.zeros((3, 5))), r"logp\[3, 4\], old_logp\[3, 5\], mask\[3, 4\]"),
        (dict(advantages=np.zeros((3, 4))), r"advantages must have shape \[B\]"),
        (dict(advantages=np.zeros(2)), r"advantages has 2 but logp has 3"),
        (dict(level="tokens"), r"level must be one of"),
        (dict(clip_low=1.5), r"clip_low must be in"),
        (dict(logp=np.zeros((3, 4), np.int32)), r"logp must be a floating-point"),
    ],
)
def test_bad_inputs_name_arrays_and_shapes(kwargs, msg):
    args = dict(logp=np.zeros((3, 4), np.float32), old_logp=np.zeros((3, 4), np.float32),
                advantages=np.zeros(3, np.float32), mask=np.ones((3, 4), bool))
    args.update(kwargs)
    with pytest.raises(ValueError, match=msg):
        jax.jit(lambda: gspo_loss(**args))()


def test_bf16_log_probs_accumulate_in_float32():
    logp, old, adv, mask = make_batch(8)
    lp16 = jnp.asarray(np.where(mask, logp, 0), jnp.bfloat16)
    old16 = jnp.asarray(old, jnp.bfloat16)
    # Reference on the same bf16-rounded inputs: only accumulation error remains.
    ref_loss, _, _ = np_gspo(np.asarray(lp16, np.float64), np.asarray(old16, np.float64), adv, mask, "sequence")
    loss, _ = jax.jit(lambda a, b: gspo_loss(logp=a, old_logp=b, advantages=adv, mask=mask))(lp16, old16)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, ref_loss, **F32)
