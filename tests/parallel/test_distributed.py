import os
import subprocess
import sys

import numpy as np
import socket
import pytest

from visd_jax.parallel.distributed import ENV_FLAG, maybe_initialize

HERE = os.path.dirname(__file__)


def test_single_host_is_a_no_op(monkeypatch):
    monkeypatch.delenv(ENV_FLAG, raising=False)
    assert maybe_initialize() is False


def test_partial_coordinator_arguments_are_rejected():
    with pytest.raises(ValueError, match="num_processes"):
        maybe_initialize(coordinator_address="127.0.0.1:1234")


@pytest.mark.slow
def test_two_processes_share_one_8_device_mesh():
    with socket.socket() as s:  # a free loopback port for the coordinator
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [
        subprocess.Popen([sys.executable, os.path.join(HERE, "_multihost_worker.py"), str(port), str(i)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for i in range(2)
    ]
    # generous: on a loaded 2-core machine start-up and the shutdown barrier take minutes
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
    results = sorted(line.split()[1:] for out in outs for line in out.splitlines() if line.startswith("RESULT"))
    expected = float(np.sum(np.arange(48, dtype=np.float64) ** 2))
    assert [r[:3] for r in results] == [["0", "2", "8"], ["1", "2", "8"]]
    assert all(float(r[3]) == expected for r in results)
