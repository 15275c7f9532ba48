import io
import json
import math

import numpy as np
import pytest

from visd_jax.training.metrics import MetricsWriter, Progress, plot_curves, read_metrics


def test_event_files_are_read_back_by_tensorboard(tmp_path):
    loader_mod = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
    w = MetricsWriter(tmp_path)
    w.write(1, {"reward/mean": 0.25, "loss": np.float32(1.5), "note": "text"})
    w.write(2, {"reward/mean": 0.75, "loss": float("nan")})
    w.close()
    (events,) = list((tmp_path / "tensorboard").iterdir())
    seen = {}
    for ev in loader_mod.EventFileLoader(str(events)).Load():
        for v in ev.summary.value:
            val = v.simple_value if v.HasField("simple_value") else None
            if val is None:  # newer loaders migrate simple_value into a tensor
                val = float(np.asarray(v.tensor.float_val)[0])
            seen[(ev.step, v.tag)] = val
    assert seen[(1, "reward/mean")] == pytest.approx(0.25)
    assert seen[(2, "reward/mean")] == pytest.approx(0.75)
    assert seen[(1, "loss")] == pytest.approx(1.5)
    assert math.isnan(seen[(2, "loss")])
    assert (1, "note") not in seen


def test_jsonl_rows_and_resume_overwrite(tmp_path):
    w = MetricsWriter(tmp_path, tensorboard=False)
    w.write(1, {"r": 0.1})
    w.write(2, {"r": float("inf")})
    w.close()
    w = MetricsWriter(tmp_path, tensorboard=False)  # a resumed run re-writes step 2
    w.write(2, {"r": 0.2})
    w.close()
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2] and rows[1]["r"] == 0.2
    raw = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert raw[1]["r"] == "inf"


def test_non_scalar_metric_is_rejected_with_its_value(tmp_path):
    w = MetricsWriter(tmp_path, tensorboard=False)
    with pytest.raises(TypeError, match="not a scalar"):
        w.write(1, {"x": [1, 2]})


def test_disabled_writer_writes_nothing(tmp_path):
    w = MetricsWriter(tmp_path / "off", enabled=False)
    w.write(1, {"r": 1.0})
    w.close()
    assert not (tmp_path / "off").exists()


def test_progress_line_fields():
    buf = io.StringIO()
    p = Progress(10, stream=buf)
    p.update(0, reward=0.5)
    line = p.update(5, reward=0.5, hard_frac=0.25, tokens_per_s=1234.0)
    assert "5/10" in line and "reward 0.500" in line and "hard 25%" in line and "1,234 tok/s" in line
    assert "ETA" in line and buf.getvalue().count("\n") == 2


def test_progress_eta_prices_each_phase_at_its_own_step_time(monkeypatch):
    clock = iter([0.0, 1.0, 2.0, 3.0,   # sft steps 1-4: 1 s each
                  20.0,                 # rl step 5: 17 s, mostly compiling (not a price)
                  30.0, 40.0])          # rl steps 6-7: 10 s each
    monkeypatch.setattr("visd_jax.training.metrics.time.monotonic", lambda: next(clock))
    p = Progress(10, phases={"sft": 5, "rl": 5}, stream=io.StringIO())
    assert "ETA --" in p.update(1, extra="sft")  # nothing measured yet
    p.update(2, extra="sft")
    p.update(3, extra="sft")
    # 1 sft step left at 1 s; the rl phase has no price yet: a lower bound, marked "+"
    assert "ETA 0:01+" in p.update(4, extra="sft")
    assert "ETA --" in p.update(5, extra="rl")  # the switch step (compiles) is no rl price
    assert "ETA 0:40" in p.update(6, extra="rl")  # 4 rl steps left x 10 s
    assert "ETA 0:30" in p.update(7, extra="rl")


def test_plot_curves_writes_a_png(tmp_path):
    rows = [{"step": i, "reward": i / 10} for i in range(20)]
    out = plot_curves(rows, ["reward"], tmp_path / "reward.png")
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_torn_last_line_and_rows_past_the_resume_step_are_dropped(tmp_path):
    """A kill mid-write leaves half a row; a resume from step 1 writes steps 2.. again."""
    w = MetricsWriter(tmp_path, tensorboard=False)
    for s in (1, 2, 3):
        w.write(s, {"r": 0.1 * s})
    w.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "r": 0.')
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3)))
    w = MetricsWriter(tmp_path, tensorboard=False, resume_step=1)
    w.write(2, {"r": 9.0})
    w.close()
    raw = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["r"]) for r in raw] == [(1, 0.1), (2, 9.0)]
    assert [json.loads(x)["step"] for x in (tmp_path / "samples.jsonl").read_text().splitlines()] == [1]


def test_wandb_offline_logs_without_a_network(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    w = MetricsWriter(tmp_path, tensorboard=False, wandb="offline", run_config={"mode": "gspo"})
    w.write(1, {"reward/total": 0.25, "note": "text"})
    w.write(2, {"reward/total": 0.75})
    assert wandb.run.config["mode"] == "gspo" and wandb.run.offline
    w.close()
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    (log,) = run.glob("run-*.wandb")
    data = log.read_bytes()  # W&B's record log: the history rows and the run config are in it
    assert b"reward/total" in data and b"0.75" in data and b"gspo" in data
    # close() tore W&B's service down so the file above was whole; a resumed run in the same
    # process starts a new one and continues the same run id
    w = MetricsWriter(tmp_path, tensorboard=False, wandb="offline", resume_step=2, run_config={"mode": "gspo"})
    w.write(3, {"reward/total": 0.875})
    w.close()
    # (folders are offline-run-<second>-<id>, with a -1 suffix when two share a second)
    run_id = run.name.split("-")[3]
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.split("-")[3] == run_id for r in runs)
    assert any(b"0.875" in f.read_bytes() for r in runs for f in r.glob("run-*.wandb"))
