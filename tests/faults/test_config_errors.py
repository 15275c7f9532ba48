"""Every config error is one line naming the field, within a second of process start
(measured as the child's CPU time: nothing heavy, no JAX, is imported before validation)."""
import resource
import subprocess
import sys

import pytest

CASES = [
    ("--config.rl.top_pp=0.5", "config.rl.top_pp is not a field; did you mean rl.top_p"),
    ("--config.rl.top_p=2.0", "config.rl.top_p=2.0: in (0, 1]"),
    ("--config.coach.selector=fixed:blur", "config.coach.selector='fixed:blur'"),
    ("--config.data.max_frames=5", "config.data.max_frames=5: a positive even int"),
    ("--config.data.max_pixels=0", "config.data.max_pixels=0"),
    ("--config.workdir=/proc/version", "config.workdir='/proc/version': a directory"),
    ("--config.data.token_buckets=(256,1024)", "config.data.token_buckets=(256, 1024): must not exceed"),
    ("--config.model.preset= --config.model.path=/nonexistent", "config.model.path='/nonexistent': a Hugging Face checkpoint"),
    ("--config.data.media_roots=STR=a,oops", "config.data.media_roots='STR=a,oops'"),
    ("--config.rl.minibatches=3", "config.rl.minibatches=3: must divide"),
]


@pytest.mark.parametrize("arg,message", CASES, ids=[c[0].split()[-1].split("=")[0][9:] for c in CASES])
def test_config_error_is_one_line_within_a_second(arg, message):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, "-m", "experiments.visd_v5e", *arg.split()], capture_output=True, text=True,
                       timeout=60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], p.stderr
    assert cpu < 1.0, f"{cpu:.2f} s of CPU before the error"


@pytest.mark.parametrize("arg,message", [
    ("--config.eval.vstar=/nonexistent.json", "config.eval.vstar='/nonexistent.json': no such V-STaR annotation file"),
    ("--config.eval.judge=/nonexistent", "config.eval.judge='/nonexistent': 'match', 'policy', or a judge checkpoint folder"),
])
def test_evaluation_job_names_a_missing_benchmark_file_before_evaluating(arg, message):
    p = subprocess.run([sys.executable, "-m", "experiments.evaluate", arg], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [f"error: {message}"], p.stderr
