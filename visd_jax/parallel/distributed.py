"""Multi-host start-up: `jax.distributed.initialize()` on multi-host runs only.

Single-host runs (a laptop, one GPU box, CI) must not call it: it blocks waiting for peers.
A run is multi-host when the caller says so (explicit coordinator arguments) or when the
launcher sets VISD_MULTIHOST=1 (tpu/launch.py does, on every worker of a slice), where
JAX discovers the coordinator from the TPU metadata. This is big_vision's gate.

Host <-> device on several processes: jit takes global jax.Arrays, and a process can read
only the shards on its own devices. `global_array` turns a host value that every process
holds (the trainer gives each process the whole batch) into a global array, each process
filling only its devices; `host_array` brings a result back whole on every process.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

ENV_FLAG = "VISD_MULTIHOST"


def maybe_initialize(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
) -> bool:
    """Initialises the distributed runtime when this is a multi-host run; returns whether it did."""
    if jax.distributed.is_initialized():  # a launcher (or test) already did it: join, don't re-init
        return True
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


def global_array(x: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """A jax.Array with `sharding` from a host value that every process holds in full.

    Each process copies only the slices its own devices hold (`make_array_from_callback`),
    so this works on one process and on many. `jax.device_put` would too, but on several
    processes it first all-gathers the whole value to assert it is equal everywhere: a
    collective per input the size of the input, which for video patches is the batch.
    """
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def host_array(x) -> np.ndarray:
    """The full value of `x` as NumPy on every process, whichever devices hold it.

    A jax.Array sharded over devices of other processes cannot be read locally; it is
    all-gathered (a collective: every process must call this in the same order, as
    every process runs the same host code). Local or replicated values are just copied.
    """
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
