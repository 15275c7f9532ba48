"""Sums and denominators: how losses are micro-batched without changing the result.

Every loss here is a ratio  sum over units of u_i / number of units  (units are
sequences), so a `*_terms` function returns a flat dict of float32 scalars whose key
suffix says how two micro-batches combine:

  *_sum, *_count  add          *_min  minimum          *_max, *_any  maximum

`merge_terms(a, b, ...)` of the micro-batch terms equals the terms of the concatenated
batch (up to float32 summation order), and the matching `*_from_terms` turns terms into
(loss, metrics). For gradient accumulation, pass the full batch's denominators (they
depend only on masks, never on parameters) as `denominators=`; then the per-micro-batch
losses sum to the full-batch loss and so do their gradients:

    den = merge_terms(*[objective_denominators(mask=m_k, ...) for k in micro])
    grads = sum(jax.grad(lambda p: visd_objective_from_terms(terms_k(p), ...,
                                                            denominators=den)[0])(params)
                for k in micro)
"""
from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp

_ADD = ("_sum", "_count")
_MIN = ("_min",)
_MAX = ("_max", "_any")


def _rule(key: str):
    if key.endswith(_ADD):
        return jnp.add
    if key.endswith(_MIN):
        return jnp.minimum
    if key.endswith(_MAX):
        return jnp.maximum
    raise ValueError(
        f"term {key!r} has no merge rule: keys must end in one of {_ADD + _MIN + _MAX}"
    )


def merge_terms(*terms: Mapping[str, jnp.ndarray]) -> dict[str, jnp.ndarray]:
    """Combines the terms of disjoint micro-batches into the terms of their union."""
    if not terms:
        raise ValueError("merge_terms needs at least one terms dict")
    keys = set(terms[0])
    for i, t in enumerate(terms[1:], start=1):
        if set(t) != keys:
            raise ValueError(
                f"terms #{i} has keys {sorted(t)} but terms #0 has {sorted(keys)}"
            )
    out = dict(terms[0])
    for t in terms[1:]:
        for k in keys:
            out[k] = _rule(k)(out[k], t[k])
    return out


def safe_ratio(num, den):
    """num / den with 0 / 0 = 0 (an empty batch contributes nothing, never NaN).

    The `where` on the denominator keeps the gradient of `num` finite too.
    """
    den = jnp.asarray(den, jnp.float32)
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def pick_denominator(terms, denominators, key):
    """`denominators[key]` when given (gradient accumulation), else the terms' own."""
    if denominators is None:
        return terms[key]
    if key not in denominators:
        raise ValueError(f"denominators lacks {key!r}; has {sorted(denominators)}")
    return denominators[key]
