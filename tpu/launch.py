"""Cloud TPU v5e lifecycle: create a slice (queued resource), install, launch, logs, stop.

    python -m tpu.launch create  --name visd --zone us-west4-a --project P --accelerator v5litepod-8
    python -m tpu.launch install --name visd --zone us-west4-a --project P
    python -m tpu.launch run     --name visd --zone us-west4-a --project P \
        --variant v5e_8 --workdir gs://BUCKET/visd -- --config.model.path=/mnt/qwen7b
    python -m tpu.launch logs | stop | delete | status  (same --name/--zone/--project)

Every action accepts --dry-run, which prints the exact commands instead of running them.
The project is shipped as a `git archive` of HEAD (what is committed is what runs) and
installed on every worker with `pip install -e .` plus the TPU build of jaxlib.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Sequence

RUNTIME_VERSIONS = {"v5litepod": "v2-alpha-tpuv5-lite", "v5p": "v2-alpha-tpuv5", "v4": "tpu-ubuntu2204-base"}
REMOTE_DIR = "visd-jax"
LOG_FILE = "visd.log"
ARCHIVE = "/tmp/visd-jax.tar.gz"
ACTIONS = ("create", "install", "run", "logs", "stop", "delete", "status")


def runtime_for(accelerator: str) -> str:
    family = accelerator.rsplit("-", 1)[0]
    if family not in RUNTIME_VERSIONS:
        raise ValueError(
            f"--accelerator {accelerator!r}: unknown TPU family {family!r}; known: {sorted(RUNTIME_VERSIONS)}"
        )
    return RUNTIME_VERSIONS[family]


def _where(opts) -> list[str]:
    return [f"--zone={opts.zone}", f"--project={opts.project}"]


def _ssh(opts, command: str, worker: str = "all") -> list[str]:
    return ["gcloud", "compute", "tpus", "tpu-vm", "ssh", opts.name, *_where(opts),
            f"--worker={worker}", f"--command={command}"]


def commands(action: str, opts) -> list[list[str]]:
    """The argv lists that `action` runs, in order. Pure: used by --dry-run and tests."""
    if action == "create":
        cmd = ["gcloud", "compute", "tpus", "queued-resources", "create", opts.name,
               f"--node-id={opts.name}", *_where(opts), f"--accelerator-type={opts.accelerator}",
               f"--runtime-version={opts.runtime or runtime_for(opts.accelerator)}"]
        if opts.spot:
            cmd.append("--spot")
        return [cmd]
    if action == "install":
        setup = " && ".join([
            f"mkdir -p ~/{REMOTE_DIR}",
            f"tar -xzf {ARCHIVE} -C ~/{REMOTE_DIR}",
            f"cd ~/{REMOTE_DIR}",
            "python3 -m pip install --upgrade pip",
            # the TPU jaxlib first, so `pip install -e .` sees jax satisfied and keeps it
            "python3 -m pip install 'jax[tpu]'",
            # the tpu extra: gcsfs, without which a gs:// work directory cannot be opened
            "python3 -m pip install -e '.[tpu]'",
        ])
        return [
            ["git", "archive", "--format=tar.gz", f"--output={ARCHIVE}", "HEAD"],
            ["gcloud", "compute", "tpus", "tpu-vm", "scp", ARCHIVE, f"{opts.name}:{ARCHIVE}",
             *_where(opts), "--worker=all"],
            _ssh(opts, setup),
        ]
    if action == "run":
        job = ["python3", "-m", "experiments.visd_v5e",
               f"--config=experiments/visd_v5e.py:{opts.variant}",
               f"--config.workdir={opts.workdir}", *opts.overrides]
        # VISD_MULTIHOST gates jax.distributed.initialize(): on for slices, off on one host.
        line = (f"cd ~/{REMOTE_DIR} && VISD_MULTIHOST=1 nohup {shlex.join(job)} "
                f"> ~/{LOG_FILE} 2>&1 &")
        return [_ssh(opts, line)]
    if action == "logs":
        return [_ssh(opts, f"tail -n 200 -F ~/{LOG_FILE}", worker=str(opts.worker))]
    if action == "stop":
        # pkill exits 1 when nothing matched; a stop of a stopped job is not an error
        return [_ssh(opts, "pkill -INT -f experiments.visd_v5e || true")]
    if action == "delete":
        return [["gcloud", "compute", "tpus", "queued-resources", "delete", opts.name,
                 *_where(opts), "--force", "--quiet"]]
    if action == "status":
        return [["gcloud", "compute", "tpus", "queued-resources", "describe", opts.name, *_where(opts)]]
    raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tpu.launch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("--name", required=True, help="queued resource and TPU node id")
    p.add_argument("--zone", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--accelerator", default="v5litepod-8")
    p.add_argument("--runtime", default=None, help="TPU runtime; default from the accelerator family")
    p.add_argument("--spot", action="store_true")
    p.add_argument("--variant", default="v5e_8", help="experiments/visd_v5e.py config variant")
    p.add_argument("--workdir", default=None, help="checkpoints and metrics, e.g. gs://BUCKET/run")
    p.add_argument("--worker", default="0", help="which worker's log to stream (logs)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    argv = list(argv)
    # everything after a bare `--` goes to the experiment untouched
    cut = argv.index("--") if "--" in argv else len(argv)
    opts = p.parse_args(argv[:cut])
    opts.overrides = argv[cut + 1:]
    if opts.action == "run" and not opts.workdir:
        p.error("run needs --workdir (a gs:// path on a slice: every worker must see it)")
    if opts.action == "create" and opts.runtime is None:
        runtime_for(opts.accelerator)  # fail at parse time, before any gcloud call
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    for cmd in commands(opts.action, opts):
        print("+", shlex.join(cmd), flush=True)
        if not opts.dry_run:
            rc = subprocess.call(cmd)
            if rc:
                print(f"command failed with exit code {rc}: {shlex.join(cmd)}", file=sys.stderr)
                return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
