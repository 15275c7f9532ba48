"""Mesh construction from a config: axes (data, fsdp, tensor), -1 fills the rest.

The same config runs on 1 CPU device, on 8 fake CPU devices in tests and on a TPU slice:
only the axis sizes change, never the code.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from jax.sharding import AxisType, Mesh

MESH_AXES = ("data", "fsdp", "tensor")

_AXIS_TYPES = {"auto": AxisType.Auto, "explicit": AxisType.Explicit}


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Sizes of the three mesh axes; exactly one may be -1 (all remaining devices).

    `axis_types` is "auto" by default: the model and losses place logical-axis
    constraints and let the compiler propagate the rest (GSPMD). JAX 0.10 meshes default
    to explicit axis types, which would require an `out_sharding` on every ambiguous op;
    "explicit" is offered for code written in that style.
    """

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    axis_types: str = "auto"

    @classmethod
    def from_any(cls, cfg: "MeshConfig | Mapping[str, Any] | None") -> "MeshConfig":
        if cfg is None:
            return cls()
        if isinstance(cfg, MeshConfig):
            return cfg
        if isinstance(cfg, Mapping) or hasattr(cfg, "items"):
            fields = {f.name for f in dataclasses.fields(cls)}
            items = dict(cfg.items())
            unknown = set(items) - fields
            if unknown:
                raise ValueError(
                    f"mesh config has unknown keys {sorted(unknown)}; expected a subset of {sorted(fields)}"
                )
            return cls(**items)
        raise TypeError(f"mesh config must be a MeshConfig or a mapping, got {type(cfg).__name__}")


def mesh_shape(cfg: MeshConfig, num_devices: int) -> tuple[int, int, int]:
    """Resolves -1 and checks that the axis sizes multiply to `num_devices`."""
    sizes = [cfg.data, cfg.fsdp, cfg.tensor]
    for name, size in zip(MESH_AXES, sizes):
        if not isinstance(size, int) or isinstance(size, bool) or (size < 1 and size != -1):
            raise ValueError(f"mesh axis {name!r} must be a positive int or -1, got {size!r}")
    fill = [i for i, s in enumerate(sizes) if s == -1]
    if len(fill) > 1:
        raise ValueError(
            f"at most one mesh axis may be -1, got {dict(zip(MESH_AXES, sizes))}"
        )
    fixed = math.prod(s for s in sizes if s != -1)
    if fill:
        if num_devices % fixed:
            raise ValueError(
                f"mesh {dict(zip(MESH_AXES, sizes))}: {num_devices} devices are not divisible "
                f"by the fixed axes' product {fixed}"
            )
        sizes[fill[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise ValueError(
            f"mesh {dict(zip(MESH_AXES, sizes))} needs {fixed} devices, but {num_devices} are available"
        )
    return tuple(sizes)  # type: ignore[return-value]


def make_mesh(
    cfg: "MeshConfig | Mapping[str, Any] | None" = None,
    *,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """Builds the (data, fsdp, tensor) mesh for `cfg` over `devices` (default: all)."""
    cfg = MeshConfig.from_any(cfg)
    if cfg.axis_types not in _AXIS_TYPES:
        raise ValueError(
            f"mesh axis_types must be one of {sorted(_AXIS_TYPES)}, got {cfg.axis_types!r}"
        )
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(cfg, len(devices))
    axis_type = _AXIS_TYPES[cfg.axis_types]
    # jax.make_mesh picks a topology-aware device order on TPU (ICI rings for the last axes).
    return jax.make_mesh(shape, MESH_AXES, axis_types=(axis_type,) * 3, devices=devices)
