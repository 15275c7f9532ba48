import shlex
import subprocess
import sys

import pytest

from tpu import launch

BASE = ["--name", "visd", "--zone", "us-west4-a", "--project", "proj"]


def _cmds(argv):
    return launch.commands(argv[0], launch.parse_args(argv))


def test_create_uses_queued_resources_with_v5e_runtime():
    (cmd,) = _cmds(["create", *BASE, "--spot"])
    assert cmd[:5] == ["gcloud", "compute", "tpus", "queued-resources", "create"]
    assert "--accelerator-type=v5litepod-8" in cmd
    assert "--runtime-version=v2-alpha-tpuv5-lite" in cmd
    assert "--node-id=visd" in cmd and "--spot" in cmd


def test_unknown_accelerator_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown TPU family 'v9'"):
        launch.parse_args(["create", *BASE, "--accelerator", "v9-8"])


def test_install_ships_head_to_every_worker():
    archive, scp, ssh = _cmds(["install", *BASE])
    assert archive[:2] == ["git", "archive"]
    assert "--worker=all" in scp and "--worker=all" in ssh
    remote = [a for a in ssh if a.startswith("--command=")][0]
    assert remote.index("jax[tpu]") < remote.index("pip install -e '.[tpu]'")


def test_run_passes_variant_workdir_and_overrides_quoted():
    (ssh,) = _cmds(["run", *BASE, "--workdir", "gs://b/run 1", "--", "--config.rl.lr=1e-6"])
    remote = [a for a in ssh if a.startswith("--command=")][0][len("--command="):]
    words = shlex.split(remote.split("nohup", 1)[1].split(">", 1)[0])
    assert words[:3] == ["python3", "-m", "experiments.visd_v5e"]
    assert "--config=experiments/visd_v5e.py:v5e_8" in words
    assert "--config.workdir=gs://b/run 1" in words
    assert "--config.rl.lr=1e-6" in words
    assert "VISD_MULTIHOST=1" in remote


def test_run_requires_workdir():
    with pytest.raises(SystemExit):
        launch.parse_args(["run", *BASE])


@pytest.mark.parametrize("action", ["logs", "stop", "delete", "status"])
def test_other_actions_target_the_named_slice(action):
    for cmd in _cmds([action, *BASE]):
        assert "visd" in cmd and "--zone=us-west4-a" in cmd and "--project=proj" in cmd


def test_dry_run_prints_every_command_and_runs_nothing():
    out = subprocess.run(
        [sys.executable, "-m", "tpu.launch", "install", *BASE, "--dry-run"],
        capture_output=True, text=True, check=True,
    ).stdout
    lines = [l for l in out.splitlines() if l.startswith("+ ")]
    assert len(lines) == 3 and lines[0].startswith("+ git archive")
