"""filter_logits (temperature, top-k, top-p) against an independent NumPy float64 sort."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from visd_jax.sampling import filter_logits


def _kept_numpy(row, *, temperature, top_k, top_p):
    """Indices kept: the top-k, then the smallest prefix (by probability) reaching top_p."""
    z = row.astype(np.float64) / temperature
    order = np.argsort(-z, kind="stable")
    if top_k is not None:
        order = order[:top_k]
    pr = np.exp(z[order] - z[order].max())
    pr /= pr.sum()
    before = np.cumsum(pr) - pr
    return set(order[before < top_p].tolist()), z


@pytest.mark.parametrize("temperature, top_k, top_p", [(0.5, 10, 0.8), (1.0, None, 0.95), (2.0, None, 0.5)])
def test_filter_logits_against_numpy(temperature, top_k, top_p):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 50)).astype(np.float32)
    got = np.asarray(filter_logits(jnp.asarray(x), temperature=temperature, top_k=top_k, top_p=top_p))
    for row, g in zip(x, got):
        kept, z = _kept_numpy(row, temperature=temperature, top_k=top_k, top_p=top_p)
        assert set(np.flatnonzero(np.isfinite(g)).tolist()) == kept
        np.testing.assert_allclose(g[sorted(kept)], z[sorted(kept)], rtol=1e-6)


def test_nucleus_on_a_qwen_sized_vocabulary():
    # V = 151936 (Qwen2.5): a flat row (nucleus of most ids), a peaked row whose top token
    # alone holds top_p, and a row of logits near 0 where float32 spacing is finest.
    rng = np.random.default_rng(1)
    V, top_p = 151936, 0.9
    flat = rng.standard_normal(V) * 0.3
    peaked = rng.standard_normal(V)
    peaked[123] = 30.0
    near0 = rng.standard_normal(V) * 1e-3
    x = np.stack([flat, peaked, near0]).astype(np.float32)
    got = np.asarray(filter_logits(jnp.asarray(x), temperature=1.0, top_k=None, top_p=top_p))
    # float32 sums of V probabilities are good to ~log2(V) * eps ~ 2e-6; ids whose mass
    # before them is that close to top_p may fall either way.
    tol = 1e-5
    for row, g in zip(x, got):
        kept = np.isfinite(g)
        np.testing.assert_array_equal(g[kept], row[kept])
        assert row[kept].min() > row[~kept].max() if (~kept).any() else True  # a threshold set
        sure, _ = _kept_numpy(row, temperature=1.0, top_k=None, top_p=top_p - tol)
        maybe, _ = _kept_numpy(row, temperature=1.0, top_k=None, top_p=top_p + tol)
        assert sure <= set(np.flatnonzero(kept).tolist()) <= maybe
    assert np.isfinite(got[1]).sum() == 1


def test_top_p_one_and_no_top_k_only_scale():
    x = np.random.default_rng(2).standard_normal((2, 30)).astype(np.float32)
    got = np.asarray(filter_logits(jnp.asarray(x), temperature=0.25, top_k=None, top_p=1.0))
    np.testing.assert_allclose(got, x.astype(np.float64) / 0.25, rtol=1e-6)
