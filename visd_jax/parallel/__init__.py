"""Device mesh and the one table of sharding rules.

Every sharding decision in visd-jax goes through `rules.RULES`: modules and losses name
*logical* axes ("batch", "vocab", "heads", ...) and this package maps them onto the mesh
axes `data`, `fsdp` and `tensor`.
"""
from visd_jax.parallel.distributed import global_array, host_array, is_main_process, maybe_initialize
from visd_jax.parallel.mesh import MESH_AXES, MeshConfig, make_mesh, mesh_shape
from visd_jax.parallel.rules import (
    RULES,
    logical_to_spec,
    named_sharding,
    shard,
    shard_like,
)

__all__ = [
    "global_array",
    "host_array",
    "is_main_process",
    "maybe_initialize",
    "MESH_AXES",
    "MeshConfig",
    "make_mesh",
    "mesh_shape",
    "RULES",
    "logical_to_spec",
    "named_sharding",
    "shard",
    "shard_like",
]
