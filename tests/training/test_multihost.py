"""Multi-host: 2 processes x 4 CPU devices (jax.distributed on localhost, gloo collectives)
run the one Trainer for 2 steps and end with the parameters of a single 8-device run, with
data parallelism across the processes and with FSDP sharding every array across them."""
import importlib.util
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from visd_jax.training.setup import build_data, flat_state
from visd_jax.training.trainer import Trainer

HERE = pathlib.Path(__file__).resolve().parent
# Both runs execute the same SPMD programs; only the collectives differ (in-process vs gloo
# between processes). A reordered float32 reduction changes a sum by a few units in the
# last place (eps32 = 2^-23 relative each), and after one SFT and one RL update that stays
# at a few ulps; 4 ulps relative, no absolute slack. More than that means other data or
# another program, not rounding. (On this CPU build the results are in fact bit-identical.)
RTOL = 4 * float(np.finfo(np.float32).eps)
_spec = importlib.util.spec_from_file_location("_multihost_train", HERE / "_multihost_train.py")
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(procs, logs, timeout: float) -> None:
    """Waits for every worker; the first failure (a peer then hangs in a collective) or the
    deadline fails the test with the workers' output."""
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs):
        failed = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
        if failed or time.monotonic() > deadline:
            what = f"process {failed[0]} failed" if failed else f"workers still running after {timeout} s"
            pytest.fail(what + "".join(f"\n--- process {i}:\n{log.read_text()[-4000:]}" for i, log in enumerate(logs)))
        time.sleep(0.5)
    for i, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"process {i}:\n{log.read_text()[-4000:]}"


@pytest.mark.slow
# fsdp only: "batch" maps to (data, fsdp), so rows AND parameters cross the process boundary,
# a superset of the data layout (which cost CI another 90 s)
@pytest.mark.parametrize("layout", ["fsdp"])
def test_two_processes_train_like_one(tmp_path, layout):
    # The synthetic data cache is built once here, then shared by the three runs.
    build_data(worker.multihost_config(tmp_path / "single", layout), tmp_path / "single")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "VISD_MULTIHOST")}
    logs = [tmp_path / f"log-{i}.txt" for i in range(2)]  # files, not pipes: nobody reads a pipe meanwhile
    procs = [subprocess.Popen([sys.executable, str(HERE / "_multihost_train.py"), str(port), str(i), "2",
                               str(tmp_path), layout], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
             for i, log in enumerate(logs)]
    try:
        # the single-process reference (this process: 8 CPU devices, the same mesh shape)
        # runs while they do
        assert len(jax.devices()) == 8
        single = Trainer(worker.multihost_config(tmp_path / "single", layout))
        rows_single = single.run()
        ref = {k: np.asarray(v) for k, v in flat_state(single.state).items()}
        _wait(procs, logs, timeout=300)
    finally:
        for p in procs:
            p.kill()

    states = [np.load(tmp_path / f"state-{i}.npz") for i in range(2)]
    names = list(states[0]["names"])
    assert names == list(states[1]["names"]) == sorted(ref)
    split = 0  # arrays no single process holds whole
    atol = 0.0
    if layout == "fsdp":
        # A sum over 2 replicas (the data layout) is a + b either way round: bit-identical.
        # Over 4 fsdp shards on 2 hosts, gloo's reduce-scatter associates the partial sums
        # differently from the in-process one. Where partials cancel to a gradient near
        # AdamW's eps (1e-8), the rounding of the partials is a percent of the gradient, and
        # g / (|g| + eps) passes it on to the update (measured: 3.6e-6 = 0.12% of lr on one
        # element of 8192). Anything actually wrong (a shard from the wrong place, a missed
        # or doubled step) moves elements by about lr, Adam's first step being +-lr: allow 1%.
        atol = 1e-2 * worker.multihost_config(tmp_path / "single", layout).sft.lr
    for i, name in enumerate(names):
        (v0, c0), (v1, c1) = ((s[f"v{i}"], s[f"c{i}"]) for s in states)
        if layout == "data":
            # data spans the processes, so each holds a full replica of every state array
            assert c0.all() and c1.all(), name
        # together the two processes hold every element, and where both hold one they agree
        assert (c0 | c1).all(), f"{name}: elements on neither process"
        both = c0 & c1
        np.testing.assert_array_equal(v0[both], v1[both], err_msg=f"{name}: the processes disagree")
        split += not (c0.all() or c1.all())
        got = np.where(c0, v0, v1)
        if np.issubdtype(ref[name].dtype, np.floating):
            np.testing.assert_allclose(got, ref[name], rtol=RTOL, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(got, ref[name], err_msg=name)
    if layout == "fsdp":
        assert split > 0, "no array was split across the processes: the fsdp axis did not span them"

    # the same rollouts were sampled, decoded and rewarded: rewards match exactly
    rows_multi = json.loads((tmp_path / "rows-0.json").read_text())
    assert [r["step"] for r in rows_multi] == [r["step"] for r in rows_single] == [1, 2]
    for a, b in zip(rows_single, rows_multi):
        for k in a:
            if k.startswith(("reward/", "rollout/", "coach/", "judge/")):
                assert a[k] == b[k], (a["step"], k)
    # process 0 alone wrote the metrics; the checkpoint (all processes) is checked by the workers
    assert (tmp_path / "multi" / "run" / "metrics.jsonl").exists()
    assert sorted(p.name for p in (tmp_path / "multi" / "run" / "checkpoints").iterdir()
                  if p.name.isdigit()) == ["2"]


def test_global_array_places_and_host_array_reads_back(mesh8):
    from visd_jax.parallel import global_array, host_array, named_sharding

    x = np.arange(8 * 6, dtype=np.float32).reshape(8, 6)
    sharding = named_sharding(mesh8, ("batch", "vocab"), x.shape)
    a = global_array(x, sharding)
    assert a.sharding == sharding and len({str(s.index) for s in a.addressable_shards}) == 8
    for s in a.addressable_shards:  # each device got exactly its slice
        np.testing.assert_array_equal(np.asarray(s.data), x[s.index])
    np.testing.assert_array_equal(host_array(a), x)
    assert global_array(np.float32(0.5), named_sharding(mesh8, ())).shape == ()
