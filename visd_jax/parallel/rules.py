"""THE sharding table: logical axis name -> mesh axes. Nothing else decides placement.

Logical names used across the package:
  batch     rows of a batch (sequences, rollouts, clips)
  seq       token / time positions (replicated: sequences are short next to the vocab)
  vocab     vocabulary (the largest activation: [B, T, V] logits)
  embed     model width D (parameters FSDP-sharded along it)
  heads     attention query heads; kv_heads: key/value heads (GQA)
  head_dim  per-head width
  mlp       MLP hidden width
  layers    stacked layer axis under nn.scan
  patches   vision patches; frames: vision blocks (canvas slots, video frames); pixels: a patch's values
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# Tuple of (logical name, mesh axes). Order is not significant; names are unique.
RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", ("data", "fsdp")),
    ("seq", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("layers", None),
    ("patches", None),
    # a batch's vision blocks (canvas slots) split like its rows: each chip encodes its share.
    # Replicated, every chip ran the whole vision tower (and its backward) for the batch: the
    # 3B rl_update on a v5e-8 needed 19.1 GiB of temporaries per chip, 8.4 sharded (tpu/compile.py)
    ("frames", ("data", "fsdp")),
    ("pixels", None),
    ("norm", None),
)

_RULES = dict(RULES)
if len(_RULES) != len(RULES):  # pragma: no cover - guards edits to the table
    raise AssertionError("duplicate logical axis name in RULES")


def logical_to_spec(
    names: Sequence[str | None],
    *,
    mesh: Mesh | None = None,
    shape: Sequence[int] | None = None,
) -> PartitionSpec:
    """PartitionSpec for a tuple of logical axis names (None = replicated dimension).

    With `mesh` and `shape`, a mesh axis that does not divide its dimension, or whose
    size is 1, is dropped so that odd shapes (e.g. a 7-token sequence, a vocab not
    divisible by the tensor axis) still place instead of failing at compile time. A mesh
    axis is used at most once per spec, first come first served.
    """
    if shape is not None and len(shape) != len(names):
        raise ValueError(f"logical names {tuple(names)} do not match shape {tuple(shape)}")
    used: set[str] = set()
    spec = []
    for i, name in enumerate(names):
        if name is None:
            spec.append(None)
            continue
        if name not in _RULES:
            raise ValueError(f"unknown logical axis {name!r}; known: {sorted(_RULES)}")
        axes = _RULES[name]
        axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        kept = []
        dim = None if shape is None else shape[i]
        for ax in axes:
            if ax in used:
                continue
            if mesh is not None:
                size = mesh.shape[ax]
                if size == 1:
                    continue
                prod = size
                for k in kept:
                    prod *= mesh.shape[k]
                if dim is not None and dim % prod:
                    continue
            kept.append(ax)
        used.update(kept)
        spec.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return PartitionSpec(*spec)


def named_sharding(
    mesh: Mesh, names: Sequence[str | None], shape: Sequence[int] | None = None
) -> NamedSharding:
    """NamedSharding on `mesh` for logical `names` (shape-aware when `shape` is given)."""
    return NamedSharding(mesh, logical_to_spec(names, mesh=mesh, shape=shape))


def shard(x: jax.Array, names: Sequence[str | None], mesh: Mesh | None = None) -> jax.Array:
    """Sharding constraint by logical names; a no-op with no mesh in context.

    Inside jit, uses the mesh set by `jax.set_mesh` (or the one passed) so library code
    never carries a mesh argument through every call.
    """
    if mesh is None:
        mesh = _current_mesh()
        if mesh is None:
            return x
    spec = logical_to_spec(names, mesh=mesh, shape=x.shape)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def shard_like(tree, names_tree, mesh: Mesh):
    """device_put a pytree with logical names given by a matching pytree of name tuples."""
    return jax.tree.map(
        lambda x, n: jax.device_put(x, named_sharding(mesh, n, x.shape)),
        tree,
        names_tree,
    )


def _current_mesh() -> Mesh | None:
    get = getattr(jax.sharding, "get_abstract_mesh", None)
    abstract = get() if get is not None else None
    if abstract is None or getattr(abstract, "empty", True):
        return None
    # with_sharding_constraint accepts the abstract mesh inside jit under jax.set_mesh.
    return abstract  # type: ignore[return-value]
