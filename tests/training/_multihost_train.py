"""One process of the multi-host trainer test (tests/training/test_multihost.py).

    python _multihost_train.py PORT PROCESS_ID NUM_PROCESSES BASE_DIR [LAYOUT]

Joins a localhost `jax.distributed` cluster of NUM_PROCESSES processes with 4 CPU devices
each (gloo collectives), runs `multihost_config` through the one Trainer in the workdir
all processes share, and writes `BASE_DIR/state-<PROCESS_ID>.npz`: for every array of the
train state, the full value as assembled from THIS process's own device shards (never
all-gathered, so equal files from two processes mean both really hold the same values),
plus a mask of the elements those shards cover. Process 0 also writes its metrics rows.
"""
import importlib.util
import json
import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent


# Mesh layouts (data, fsdp, tensor) over 2 processes x 4 devices. The first axis of size > 1
# spans the processes: "data" = hosts hold data-parallel replicas (a v5e-64's 8-way data
# axis); "fsdp" = every parameter and optimizer moment is split ACROSS the hosts, so no
# process holds a whole array and each step all-gathers weights over the network (v5e-8
# runs its fsdp axis across its 2 hosts).
LAYOUTS = {"data": (2, 2, 2), "fsdp": (1, 4, 2)}


def multihost_config(base: pathlib.Path, layout: str = "data"):
    """The tiny config (tests/training/conftest.py) for 2 steps, SFT then visd_coach RL, on
    the mesh LAYOUTS[layout]. One checkpoint, after the last step (each save costs seconds
    of slicing compiles)."""
    spec = importlib.util.spec_from_file_location("_training_conftest", HERE / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    data, fsdp, tensor = LAYOUTS[layout]
    return mod.tiny_config(base, mode="visd_coach", sft_steps=1, rl_steps=1,
                           **{"mesh.data": data, "mesh.fsdp": fsdp, "mesh.tensor": tensor,
                              "data.num_workers": 0, "checkpoint.every": 2})


def local_value(x):
    """(value, covered): `x` assembled from this process's addressable shards only.

    Replicas of one slice on several local devices must agree bit for bit."""
    import numpy as np

    value = np.zeros(x.shape, x.dtype)
    covered = np.zeros(x.shape, bool)
    for s in x.addressable_shards:
        data = np.asarray(s.data)
        if covered[s.index].any() and not np.array_equal(value[s.index], data):
            raise AssertionError(f"local replicas of slice {s.index} differ")
        value[s.index] = data
        covered[s.index] = True
    return value, covered


def main(port: str, pid: int, nproc: int, base: pathlib.Path, layout: str = "data") -> None:
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"  # before jax is imported
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ.pop("VISD_MULTIHOST", None)  # the cluster is joined with explicit arguments below
    sys.path.insert(0, str(HERE.parents[1]))  # the repo root: `experiments`, `data`

    import jax
    import numpy as np
    from absl import flags

    from visd_jax.parallel import maybe_initialize
    from visd_jax.training.checkpoint import Checkpointer, abstract_like
    from visd_jax.training.setup import flat_state
    from visd_jax.training.trainer import Trainer

    flags.FLAGS.mark_as_parsed()  # grain reads absl flags
    assert maybe_initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=nproc, process_id=pid)
    assert jax.process_count() == nproc and len(jax.local_devices()) == 4, jax.devices()

    trainer = Trainer(multihost_config(base / "multi", layout))  # Trainer's own maybe_initialize joins, no re-init
    rows = trainer.run()
    flat = flat_state(trainer.state)  # params, optimizer moments, EMA teacher, step
    names = sorted(flat)
    arrays = {}
    for i, name in enumerate(names):
        arrays[f"v{i}"], arrays[f"c{i}"] = local_value(flat[name])
    np.savez(base / f"state-{pid}.npz", names=np.asarray(names), **arrays)
    # The checkpoint every process wrote into the one directory reads back, each process
    # restoring its own shards, bit for bit, with the data iterator's state beside it.
    ckpt = Checkpointer(base / "multi" / "run" / "checkpoints", every=1)
    assert ckpt.all_steps() == [2], ckpt.all_steps()
    restored, meta = ckpt.restore(2, abstract_like(flat))
    ckpt.close()
    for name in names:
        for a, b in zip(local_value(restored[name]), local_value(flat[name])):
            assert np.array_equal(a, b), f"restored {name} differs"
    assert meta["sft_iter"] == trainer.sft_iter.get_state() and meta["rl_iter"] == trainer.rl_iter.get_state()
    if pid == 0:
        (base / "rows-0.json").write_text(json.dumps(rows))
    jax.distributed.shutdown()


if __name__ == "__main__":
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), pathlib.Path(sys.argv[4]), *sys.argv[5:6])
