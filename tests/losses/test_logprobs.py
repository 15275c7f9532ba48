"""token_logprobs (chunked, custom VJP) and token_logprobs_from_logits vs NumPy float64."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visd_jax.losses import token_logprobs, token_logprobs_from_logits

F32 = dict(rtol=2e-5, atol=2e-5)  # float32 reductions over V <= 100 and D <= 16


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_logprobs_and_grads(h, w, y, g):
    """Value of logp and the gradients of sum(g * logp) w.r.t. h and w, in float64."""
    z = np.einsum("btd,dv->btv", h, w)
    ls = np_log_softmax(z)
    logp = np.take_along_axis(ls, y[..., None], -1)[..., 0]
    onehot = np.eye(w.shape[1])[y]
    dz = g[..., None] * (onehot - np.exp(ls))
    return logp, np.einsum("btv,dv->btd", dz, w), np.einsum("btd,btv->dv", h, dz)


def make(rng, b, t, d, v, dtype=np.float32):
    h = rng.normal(size=(b, t, d)).astype(dtype)
    w = (rng.normal(size=(d, v)) * 0.5).astype(dtype)
    y = rng.integers(0, v, size=(b, t)).astype(np.int32)
    g = rng.normal(size=(b, t)).astype(np.float32)
    return h, w, y, g


@pytest.mark.parametrize("b,t,chunk", [(3, 37, 8), (2, 1, 4), (2, 16, 16), (1, 5, 64), (4, 12, 1)])
def test_chunked_value_and_grad_match_float64(b, t, chunk):
    rng = np.random.default_rng(t * 100 + chunk)
    h, w, y, g = make(rng, b, t, 16, 53)
    ref_logp, ref_dh, ref_dw = np_logprobs_and_grads(h.astype(np.float64), w.astype(np.float64), y, g)

    def f(h, w):
        logp = token_logprobs(hidden=h, unembed=w, targets=y, chunk_size=chunk)
        return jnp.sum(g * logp), logp

    (_, logp), (dh, dw) = jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(h, w)
    assert logp.shape == (b, t) and logp.dtype == jnp.float32
    np.testing.assert_allclose(logp, ref_logp, **F32)
    np.testing.assert_allclose(dh, ref_dh, **F32)
    np.testing.assert_allclose(dw, ref_dw, **F32)


def test_chunked_gradient_equals_naive_autodiff():
    rng = np.random.default_rng(0)
    h, w, y, g = make(rng, 2, 21, 8, 40)

    def naive(h, w):
        return jnp.sum(g * token_logprobs_from_logits(logits=h @ w, targets=y))

    def chunked(h, w):
        return jnp.sum(g * token_logprobs(hidden=h, unembed=w, targets=y, chunk_size=4))

    vn, gn = jax.jit(jax.value_and_grad(naive, argnums=(0, 1)))(h, w)
    vc, gc = jax.jit(jax.value_and_grad(chunked, argnums=(0, 1)))(h, w)
    np.testing.assert_allclose(vc, vn, **F32)
    for a, b in zip(gc, gn):
        np.testing.assert_allclose(a, b, **F32)


def test_from_logits_matches_float64_and_accumulates_bf16_in_float32():
    rng = np.random.default_rng(1)
    z = (rng.normal(size=(2, 7, 31)) * 4).astype(jnp.bfloat16)
    y = rng.integers(0, 31, size=(2, 7))
    out = token_logprobs_from_logits(logits=jnp.asarray(z), targets=jnp.asarray(y))
    assert out.dtype == jnp.float32
    # The reference sees the same bf16-rounded logits, so only accumulation error is
    # left, and float32 tolerance applies: a bf16 reduction would miss it by ~1e-2.
    ref = np.take_along_axis(np_log_softmax(np.asarray(z, np.float64)), y[..., None], -1)[..., 0]
    np.testing.assert_allclose(out, ref, **F32)


def test_chunked_bf16_inputs_accumulate_in_float32():
    rng = np.random.default_rng(2)
    h, w, y, _ = make(rng, 2, 9, 16, 45)
    hb, wb = jnp.asarray(h, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
    out = jax.jit(lambda a, b: token_logprobs(hidden=a, unembed=b, targets=y, chunk_size=4))(hb, wb)
    ref, _, _ = np_logprobs_and_grads(np.asarray(hb, np.float64), np.asarray(wb, np.float64), y,
                                      np.zeros(y.shape))
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref, **F32)
    dh, dw = jax.jit(jax.grad(lambda a, b: jnp.sum(token_logprobs(hidden=a, unembed=b, targets=y)),
                              argnums=(0, 1)))(hb, wb)
    assert dh.dtype == jnp.bfloat16 and dw.dtype == jnp.bfloat16


def _largest_intermediate(fn, *args):
    sizes = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                sizes.append(int(np.prod(var.aval.shape)) if hasattr(var.aval, "shape") else 0)
            for p in eqn.params.values():
                for sub in (p if isinstance(p, (list, tuple)) else [p]):
                    if hasattr(sub, "jaxpr"):
                        walk(sub.jaxpr if hasattr(sub.jaxpr, "eqns") else sub.jaxpr.jaxpr)
                    elif hasattr(sub, "eqns"):
                        walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return max(sizes)


def test_no_full_logits_in_forward_or_backward():
    b, t, d, v, chunk = 2, 64, 8, 97, 8
    rng = np.random.default_rng(3)
    h, w, y, g = make(rng, b, t, d, v)

    def f(h, w):
        return jnp.sum(g * token_logprobs(hidden=h, unembed=w, targets=y, chunk_size=chunk))

    largest = _largest_intermediate(jax.value_and_grad(f, argnums=(0, 1)), h, w)
    assert largest <= b * chunk * v < b * t * v
    # The same walk does find the full logits in the naive version, so it can fail.
    naive = _largest_intermediate(
        jax.grad(lambda h, w: jnp.sum(token_logprobs_from_logits(logits=h @ w, targets=y))), h, w)
    assert naive >= b * t * v


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        (dict(hidden=np.zeros((2, 3, 4)), unembed=np.zeros((5, 7)), targets=np.zeros((2, 3), int)),
         r"model width D mismatch: hidden has 4 but unembed has 5"),
        (dict(hidden=np.zeros((2, 3, 4)), unembed=np.zeros((4, 7)), targets=np.zeros((2, 4), int)),
         r"hidden has 3 but targets has 4"),
        (dict(hidden=np.zeros((2, 3)), unembed=np.zeros((4, 7)), targets=np.zeros((2, 3), int)),
         r"hidden must have shape \[B, T, D\].*\(2, 3\)"),
        (dict(hidden=np.zeros((2, 3, 4)), unembed=np.zeros((4, 7)), targets=np.zeros((2, 3))),
         r"targets must be an integer array"),
        (dict(hidden=np.zeros((2, 3, 4)), unembed=np.zeros((4, 7)), targets=np.zeros((2, 3), int),
              chunk_size=0), r"chunk_size must be a positive int"),
    ],
)
def test_bad_inputs_raise_at_trace_time(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        jax.jit(lambda: token_logprobs(**kwargs))()


def test_from_logits_shape_mismatch_names_arrays():
    with pytest.raises(ValueError, match=r"logits has 3 but targets has 2"):
        token_logprobs_from_logits(logits=np.zeros((2, 3, 5)), targets=np.zeros((2, 2), int))
