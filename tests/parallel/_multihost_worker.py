"""One process of the 2-process test: 4 local CPU devices, 8 global, a sharded reduction."""
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from visd_jax.parallel import MeshConfig, make_mesh, named_sharding  # noqa: E402
from visd_jax.parallel.distributed import maybe_initialize  # noqa: E402

port, pid = sys.argv[1], int(sys.argv[2])
assert maybe_initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid)
mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
x_global = np.arange(8 * 6, dtype=np.float32).reshape(8, 6)
sharding = named_sharding(mesh, ("batch", None), x_global.shape)
x = jax.make_array_from_callback(x_global.shape, sharding, lambda idx: x_global[idx])
total = jax.jit(lambda a: jnp.sum(a * a), out_shardings=named_sharding(mesh, ()))(x)
print(f"RESULT {jax.process_index()} {jax.process_count()} {len(jax.devices())} {float(total)}", flush=True)
jax.distributed.shutdown()
