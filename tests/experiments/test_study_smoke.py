"""The convergence study's harness at 2 RL steps a run (experiments/study.py:smoke): every
method trains from the one SFT policy on the same prompts, is evaluated, and the tables
and figure are drawn; a second call reads the runs and trains nothing. It also stands in
for a per-mode trainer test of visioncoach and visd_coach (mode metrics, lambda, ratios)."""
from __future__ import annotations

import json
import math

import pytest

pytestmark = pytest.mark.slow


def test_study_smoke_runs_every_method_then_redraws(tmp_path):
    from experiments import study
    from visd_jax.training.metrics import read_metrics

    cfg = study.get_config("smoke")
    cfg.workdir = str(tmp_path / "study")
    cfg.data.cache_dir = str(tmp_path / "cache")
    cfg.study.figure = str(tmp_path / "study.png")
    study.check(cfg)
    out = study.run(cfg)
    assert set(out["methods"]) == set(study.METHODS) and 0 < out["ceiling"] <= 7
    firsts = set()
    for name, method, _, _ in study.plan(cfg):
        rows = read_metrics(f"{cfg.workdir}/runs/{name}")
        assert [r["step"] for r in rows] == [1, 2] and "eval/total" in rows[-1]
        assert out["methods"][method]["steps"] == [0, 2]  # the SFT policy's score, then step 2
        for r in rows:
            assert r["phase"] == "rl" and 0.0 <= r["reward/total"] <= 7.0
            assert math.isfinite(r["train/loss"]) and r["train/skipped"] == 0
            assert r["train/gspo/num_sequences"] == 2.0  # 4 rollouts in 2 minibatches
        assert ("coach/hard_frac" in rows[0]) == ("coach" in method)
        assert ("train/visd/weight_mean" in rows[0]) == method.startswith("visd")
        if method.startswith("visd"):
            assert [r["visd/lambda"] for r in rows] == pytest.approx([0.5, 0.45])
        # the second minibatch is off-policy: its ratio has left 1
        assert rows[-1]["train/gspo/ratio_max"] != 1.0 or rows[-1]["train/gspo/ratio_min"] != 1.0
        samples = [json.loads(x) for x in open(f"{cfg.workdir}/runs/{name}/samples.jsonl")]
        firsts.add(samples[0]["id"])
    assert len(firsts) == 1  # one data order for every method
    assert open(cfg.study.figure, "rb").read(4) == b"\x89PNG"
    assert "| visd_coach | 1 |" in open(f"{cfg.workdir}/study.md").read()
    cfg.study.redraw = True
    again = study.run(cfg)
    assert again["methods"] == out["methods"] and again["walls"] == out["walls"]


def test_a_run_held_by_a_live_process_is_skipped_and_a_stale_lock_is_not(tmp_path, capsys):
    import os

    from experiments import study

    cfg = study.run_config(study.get_config("smoke"), "gspo", 0, {}, "gspo_s0")
    cfg.workdir = str(tmp_path / "run")
    lock = tmp_path / "run" / ".study-lock"
    lock.parent.mkdir()
    lock.write_text(str(os.getpid()))  # this test's own process: alive
    study._train(cfg, 2)
    assert "skipped" in capsys.readouterr().out and not (tmp_path / "run" / "metrics.jsonl").exists()
    lock.write_text("999999999")  # no such process: the lock of a killed run
    assert not study._held(lock)
