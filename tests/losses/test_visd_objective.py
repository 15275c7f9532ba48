"""visd_objective: the switches, a NumPy float64 reference, and exact micro-batching."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visd_jax.losses import (
    merge_terms,
    objective_denominators,
    visd_objective,
    visd_objective_from_terms,
    visd_objective_terms,
)

F32 = dict(rtol=2e-5, atol=2e-6)
CL, CH, C = 3e-4, 4e-4, 0.2


def np_log_softmax(z):
    z = z.astype(np.float64) - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_objective(d, mix, alpha, beta):
    """SPEC sections 4-6 written out in float64, term by term."""
    m = d["mask"].astype(np.float64)
    n_tok = m.sum(1)
    valid = n_tok > 0
    s = np.exp(np.where(m > 0, d["logp"] - d["old_logp"].astype(np.float64), 0).sum(1) / np.maximum(n_tok, 1))
    a = d["adv"].astype(np.float64)
    w = np.clip(np.exp(np.sign(a)[:, None] * d["signal"]), 1 - C, 1 + C)
    w = np.where(m > 0, w, 1.0)
    a_t = a[:, None] * ((1 - mix) + mix * w)
    sc = np.clip(s, 1 - CL, 1 + CH)[:, None]
    per_tok = -np.minimum(s[:, None] * a_t, sc * a_t)
    gspo = ((per_tok * m).sum(1) / np.maximum(n_tok, 1))[valid].mean()
    sel = d["sd_selected"] & d["sd_hard"] & d["sd_mask"].any(1)
    nll = np.mean([-d["sd_logp"][i][d["sd_mask"][i]].astype(np.float64).mean() for i in np.flatnonzero(sel)])
    ls, lt = np_log_softmax(d["zs"]), np_log_softmax(d["zt"])
    kl_t = (np.exp(ls) * (ls - lt)).sum(-1)
    kl = ((w * kl_t * m).sum(1) / np.maximum(n_tok, 1))[valid].mean()
    return gspo + alpha * nll + beta * kl


def make(seed, b=8, t=6, b_sd=6, t_sd=5, v=19):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, t + 1, size=b)
    lengths[0] = 0
    mask = np.arange(t)[None] < lengths[:, None]
    sd_len = rng.integers(1, t_sd + 1, size=b_sd)
    sd_len[1] = 0
    f32 = np.float32
    return dict(
        logp=np.log(rng.uniform(0.05, 1, size=(b, t))).astype(f32),
        old_logp=np.log(rng.uniform(0.05, 1, size=(b, t))).astype(f32),
        adv=rng.normal(size=b).astype(f32),
        mask=mask,
        signal=(rng.normal(size=(b, t)) * 0.3).astype(f32),
        sd_logp=np.log(rng.uniform(0.05, 1, size=(b_sd, t_sd))).astype(f32),
        sd_mask=np.arange(t_sd)[None] < sd_len[:, None],
        sd_selected=np.array([1, 1, 0, 1, 1, 0], bool)[:b_sd],
        sd_hard=np.array([1, 1, 1, 0, 1, 1], bool)[:b_sd],
        zs=rng.normal(size=(b, t, v)).astype(f32),
        zt=rng.normal(size=(b, t, v)).astype(f32),
    )


def call_kwargs(d):
    return dict(logp=d["logp"], old_logp=d["old_logp"], advantages=d["adv"], mask=d["mask"],
                signal=d["signal"], sd_logp=d["sd_logp"], sd_mask=d["sd_mask"],
                sd_selected=d["sd_selected"], sd_hard=d["sd_hard"],
                kl_student_logits=d["zs"], kl_teacher_logits=d["zt"])


def test_full_objective_matches_float64_with_traced_schedule():
    d = make(0)

    @jax.jit
    def f(mix, alpha, beta):
        return visd_objective(**call_kwargs(d), mix=mix, alpha=alpha, beta_kl=beta)

    for mix, alpha, beta in [(0.5, 0.1, 0.05), (0.17, 0.3, 1.0), (0.0, 0.0, 0.0)]:
        loss, metrics = f(mix, alpha, beta)
        np.testing.assert_allclose(loss, np_objective(d, mix, alpha, beta), **F32)
        assert metrics["loss"] == loss
        assert {"gspo/clip_frac_low", "visd/weight_mean", "sd/nll", "kl/loss"} <= set(metrics)
        assert all(jnp.ndim(v) == 0 for v in metrics.values())
    if hasattr(f, "_cache_size"):
        assert f._cache_size() == 1  # the schedule values never recompile


def test_switches_gspo_only_visioncoach_and_visd_are_one_function():
    d = make(1)
    base = dict(logp=d["logp"], old_logp=d["old_logp"], advantages=d["adv"], mask=d["mask"])
    grad = jax.jit(jax.value_and_grad(lambda lp, kw: visd_objective(**{**kw, "logp": lp})[0]))
    v_gspo, g_gspo = grad(d["logp"], base)
    # VISD with mix = 0 is GSPO (now at token level) in value and gradient.
    v_visd0, g_visd0 = grad(d["logp"], {**base, "signal": d["signal"], "mix": 0.0})
    np.testing.assert_allclose(v_visd0, v_gspo, **F32)
    np.testing.assert_allclose(g_visd0, g_gspo, **F32)
    # VisionCoach adds alpha * NLL and nothing else.
    sd = {k: d[k] for k in ("sd_logp", "sd_mask", "sd_selected", "sd_hard")}
    v_vc, metrics = jax.jit(lambda kw: visd_objective(**kw, alpha=0.1))({**base, **sd})
    np.testing.assert_allclose(v_vc, v_gspo + 0.1 * metrics["sd/nll"], **F32)
    assert "visd/weight_mean" not in metrics and "kl/loss" not in metrics


def test_micro_batches_and_gradient_accumulation_equal_the_full_batch():
    d = make(2, b=8, b_sd=6)
    hp = dict(mix=0.4, alpha=0.1, beta_kl=0.05)

    def kw(sl, sd_sl, lp):
        k = call_kwargs(d)
        out = {key: (val[sl] if key in ("logp", "old_logp", "advantages", "mask", "signal",
                                         "kl_student_logits", "kl_teacher_logits")
                     else val[sd_sl]) for key, val in k.items()}
        out["logp"] = lp
        return out

    full_sl, full_sd = slice(0, 8), slice(0, 6)
    parts = [(slice(0, 4), slice(0, 3)), (slice(4, 8), slice(3, 6))]

    @jax.jit
    def full(lp):
        return visd_objective(**kw(full_sl, full_sd, None) | {"logp": lp}, **hp)

    (loss_full, metrics_full), g_full = jax.value_and_grad(full, has_aux=True)(d["logp"])
    terms = [jax.jit(lambda lp, sl=sl, sd=sd: visd_objective_terms(**kw(sl, sd, lp), mix=hp["mix"]))(d["logp"][sl])
             for sl, sd in parts]
    loss, metrics = visd_objective_from_terms(merge_terms(*terms), alpha=hp["alpha"], beta_kl=hp["beta_kl"])
    np.testing.assert_allclose(loss, loss_full, **F32)
    for k in metrics_full:
        np.testing.assert_allclose(metrics[k], metrics_full[k], **F32, err_msg=k)

    den = merge_terms(*[objective_denominators(mask=d["mask"][sl], sd_mask=d["sd_mask"][sd],
                                               sd_selected=d["sd_selected"][sd], sd_hard=d["sd_hard"][sd])
                        for sl, sd in parts])
    grads, losses = [], []
    for sl, sd in parts:
        def part(lp):
            t = visd_objective_terms(**kw(sl, sd, lp), mix=hp["mix"])
            return visd_objective_from_terms(t, alpha=hp["alpha"], beta_kl=hp["beta_kl"], denominators=den)[0]
        v, g = jax.jit(jax.value_and_grad(part))(d["logp"][sl])
        losses.append(v)
        grads.append(g)
    np.testing.assert_allclose(sum(losses), loss_full, **F32)
    np.testing.assert_allclose(np.concatenate(grads), g_full, **F32)


def test_objective_bad_inputs():
    d = make(3)
    with pytest.raises(ValueError, match=r"level='sequence' cannot take the per-token advantages"):
        visd_objective(**call_kwargs(d), level="sequence")
    k = call_kwargs(d)
    k.pop("sd_mask")
    with pytest.raises(ValueError, match=r"sd_logp needs sd_mask"):
        visd_objective(**k)
    with pytest.raises(ValueError, match=r"sd_selected\[6\], sd_hard\[5\]"):
        visd_objective(**{**call_kwargs(d), "sd_hard": d["sd_hard"][:5]})
