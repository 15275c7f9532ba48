"""Multi-host start-up: `jax.distributed.initialize()` on multi-host runs only.

Single-host runs (a laptop, one GPU box, CI) must not call it: it blocks waiting for peers.
A run is multi-host when the caller says so (explicit coordinator arguments) or when the
launcher sets VISD_MULTIHOST=1 (tpu/launch.py does, on every worker of a slice), where
JAX discovers the coordinator from the TPU metadata. This is big_vision's gate.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import jax

ENV_FLAG = "VISD_MULTIHOST"


def maybe_initialize(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
) -> bool:
    """Initialises the distributed runtime when this is a multi-host run; returns whether it did."""
    explicit = coordinator_address is not None
    if not explicit and os.environ.get(ENV_FLAG, "") not in ("1", "true", "True"):
        return False
    if explicit and (num_processes is None or process_id is None):
        raise ValueError(
            "coordinator_address given without num_processes and process_id; "
            f"got num_processes={num_processes!r}, process_id={process_id!r}"
        )
    # CPU processes need a collectives backend to all-reduce across hosts (tests, laptops);
    # it only affects the CPU client, and querying the backend here would initialise it
    # too early for jax.distributed.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
    )
    return True


def is_main_process() -> bool:
    """Process 0 writes metrics, plots and logs; every process takes part in checkpoints."""
    return jax.process_index() == 0
