"""Trace-time input validation shared by the losses.

Every check runs on static shapes and dtypes, so a bad call fails when the function is
traced (inside or outside `jax.jit`) with a ValueError that names the arrays and shapes,
never later as a broadcasting surprise inside a compiled step.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp


def shape_of(x) -> tuple[int, ...]:
    return tuple(getattr(x, "shape", ()))


def require_rank(name: str, x, rank: int, dims: str) -> None:
    """`x` must have `rank` dimensions; `dims` spells them out for the message ("B, T")."""
    if x is None:
        raise ValueError(f"{name} is required, got None")
    if jnp.ndim(x) != rank:
        raise ValueError(f"{name} must have shape [{dims}] (rank {rank}), got shape {shape_of(x)}")


def require_float(name: str, x) -> None:
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise ValueError(f"{name} must be a floating-point array, got dtype {jnp.result_type(x)}")


def require_int(name: str, x) -> None:
    if not jnp.issubdtype(jnp.result_type(x), jnp.integer):
        raise ValueError(f"{name} must be an integer array of token ids, got dtype {jnp.result_type(x)}")


def require_mask(name: str, x) -> None:
    dt = jnp.result_type(x)
    if not (dt == jnp.bool_ or jnp.issubdtype(dt, jnp.integer) or jnp.issubdtype(dt, jnp.floating)):
        raise ValueError(f"{name} must be a boolean (or 0/1 numeric) mask, got dtype {dt}")


def require_same_shape(**arrays) -> None:
    """All named arrays share one shape; the message lists every name with its shape."""
    shapes = {k: shape_of(v) for k, v in arrays.items()}
    if len(set(shapes.values())) > 1:
        listing = ", ".join(f"{k}{list(s)}" for k, s in shapes.items())
        raise ValueError(f"shape mismatch: {listing} must all have the same shape")


def require_dims(pairs: Sequence[tuple[str, int, str, int]], what: str) -> None:
    """Each (name_a, dim_a, name_b, dim_b) must agree; `what` names the dimension."""
    for name_a, dim_a, name_b, dim_b in pairs:
        if dim_a != dim_b:
            raise ValueError(f"{what} mismatch: {name_a} has {dim_a} but {name_b} has {dim_b}")


def as_mask(x) -> jnp.ndarray:
    """A mask as float32 0/1 (non-zero means 'counts')."""
    return (jnp.asarray(x) != 0).astype(jnp.float32)
