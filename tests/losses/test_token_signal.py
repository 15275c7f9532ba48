"""token_signal_from_logits and the chunked token_signal vs NumPy float64."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visd_jax.losses import token_signal, token_signal_from_logits

F32 = dict(rtol=2e-5, atol=2e-5)


def np_signal(zs, zt, y, mode, k, gamma):
    zs, zt = zs.astype(np.float64), zt.astype(np.float64)
    out = np.zeros(y.shape)
    for idx in np.ndindex(*y.shape):
        s, t, tok = zs[idx], zt[idx], y[idx]
        full = (t[tok] - np.log(np.exp(t).sum())) - (s[tok] - np.log(np.exp(s).sum()))
        if mode == "sampled":
            out[idx] = full
            continue
        support = set(np.argsort(-t, kind="stable")[:k].tolist()) | {int(tok)}
        sup = np.array(sorted(support))
        topk = (t[tok] - np.log(np.exp(t[sup]).sum())) - (s[tok] - np.log(np.exp(s[sup]).sum()))
        out[idx] = (1 - gamma) * topk + gamma * full
    return out


def make(seed, b=3, t=11, v=40):
    rng = np.random.default_rng(seed)
    zs = (rng.normal(size=(b, t, v)) * 2).astype(np.float32)
    zt = (zs + rng.normal(size=(b, t, v))).astype(np.float32)
    y = rng.integers(0, v, size=(b, t)).astype(np.int32)
    # Some targets inside the teacher's top-K, some outside it.
    y[0] = np.argmax(zt[0], -1)
    return zs, zt, y


@pytest.mark.parametrize("mode,k,gamma", [("topk", 16, 0.0), ("topk", 4, 0.0), ("topk", 4, 0.35),
                                          ("topk", 1, 1.0), ("sampled", 16, 0.0)])
def test_signal_from_logits_matches_float64(mode, k, gamma):
    zs, zt, y = make(k)
    out = jax.jit(lambda a, b: token_signal_from_logits(student_logits=a, teacher_logits=b, targets=y,
                                                        mode=mode, top_k=k, gamma=gamma))(zs, zt)
    np.testing.assert_allclose(out, np_signal(zs, zt, y, mode, k, gamma), **F32)


def test_topk_with_k_equal_vocab_is_the_sampled_signal():
    zs, zt, y = make(5, v=12)
    a = jax.jit(lambda s, t: token_signal_from_logits(student_logits=s, teacher_logits=t, targets=y,
                                                      top_k=12))(zs, zt)
    ref = np_signal(zs, zt, y, "sampled", 0, 0.0)
    np.testing.assert_allclose(a, ref, **F32)


@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_chunked_signal_matches_float64_and_is_detached(chunk):
    rng = np.random.default_rng(chunk)
    b, t, ds, dt, v = 2, 9, 8, 6, 37
    hs = rng.normal(size=(b, t, ds)).astype(np.float32)
    ht = rng.normal(size=(b, t, dt)).astype(np.float32)
    ws = (rng.normal(size=(ds, v)) * 0.5).astype(np.float32)
    wt = (rng.normal(size=(dt, v)) * 0.5).astype(np.float32)
    y = rng.integers(0, v, size=(b, t)).astype(np.int32)

    def f(hs, ws):
        return token_signal(student_hidden=hs, teacher_hidden=ht, student_unembed=ws, teacher_unembed=wt,
                            targets=y, top_k=5, gamma=0.25, chunk_size=chunk)

    out = jax.jit(f)(hs, ws)
    ref = np_signal(np.einsum("btd,dv->btv", hs.astype(np.float64), ws),
                    np.einsum("btd,dv->btv", ht.astype(np.float64), wt), y, "topk", 5, 0.25)
    np.testing.assert_allclose(out, ref, **F32)
    dh, dw = jax.grad(lambda a, b: jnp.sum(f(a, b)), argnums=(0, 1))(hs, ws)
    assert not np.any(np.asarray(dh)) and not np.any(np.asarray(dw))


def test_signal_bad_inputs():
    zs, zt, y = make(0)
    with pytest.raises(ValueError, match=r"student_logits\[3, 11, 40\], teacher_logits\[3, 11, 39\]"):
        token_signal_from_logits(student_logits=zs, teacher_logits=zt[..., :39], targets=y)
    with pytest.raises(ValueError, match=r"top_k must be an int in \[1, V=40\]"):
        token_signal_from_logits(student_logits=zs, teacher_logits=zt, targets=y, top_k=41)
    with pytest.raises(ValueError, match=r"mode must be one of"):
        token_signal_from_logits(student_logits=zs, teacher_logits=zt, targets=y, mode="full")
    with pytest.raises(ValueError, match=r"model width / vocabulary mismatch: student_hidden has 4"):
        token_signal(student_hidden=np.zeros((1, 2, 4)), teacher_hidden=np.zeros((1, 2, 4)),
                     student_unembed=np.zeros((3, 5)), teacher_unembed=np.zeros((4, 5)),
                     targets=np.zeros((1, 2), np.int32))
