"""The fit check (`python -m tpu.compile`) on a CPU host: real libtpu compiles for a v5e
topology. A small preset fits with every program in the table; 32B cannot fit 4 chips."""
import subprocess
import sys

import pytest

pytest.importorskip("libtpu", reason="the fit check needs the aot extra (pip install -e '.[aot]')")

from experiments import visd_v5e  # noqa: E402
from tpu.compile import CHIPS, fit_report  # noqa: E402


@pytest.mark.slow
def test_a_small_preset_fits_a_v5e_2x2_and_every_program_is_compiled():
    c = visd_v5e.get_config("local")
    c.model.update(preset="tiny", param_dtype="float32", dtype="bfloat16", mu_dtype="bfloat16", remat=True,
                   scan_layers=True)
    c.data.update(token_buckets=(96,), max_prompt_tokens=96)
    c.rl.update(prompts_per_step=2, num_generations=2, minibatches=2, max_new_tokens=16)
    c.sft.batch_size = 2
    report = fit_report(c, "v5e:2x2")
    assert report.fits, report.table()
    assert [r.program for r in report.rows] == ["sample", "score", "rl_update", "sft_update", "ema"]
    assert report.mesh == {"data": 4, "fsdp": 1, "tensor": 1}
    for r in report.rows:
        assert 0 < r.total <= CHIPS["v5e"].hbm and r.args > 0, r
    # float32 master weights: the state holds them (4 bytes a parameter), Adam's first moment in
    # bf16 and second in f32 (6), the teacher in float32 (4)
    st = report.state
    assert st["opt"] == pytest.approx(1.5 * st["params"], rel=0.01) and st["teacher"] == st["params"]
    updates = {r.program: r for r in report.rows}
    assert updates["rl_update"].aliased > 0  # the donated state is written in place
    assert "| rl_update |" in report.table() and report.table().endswith("fits")


def test_32b_on_a_v5e_2x2_is_reported_as_not_fitting():
    c = visd_v5e.get_config("v5e_8")
    c.model.preset = "32b"
    report = fit_report(c, "v5e:2x2")
    assert not report.fits
    assert sum(report.state.values()) > CHIPS["v5e"].hbm
    assert "DOES NOT FIT: the train state alone needs" in report.table()


def test_the_command_exits_non_zero_when_it_does_not_fit():
    out = subprocess.run([sys.executable, "-m", "tpu.compile", "--config=experiments/visd_v5e.py:v5e_8",
                          "--topology=v5e:2x2", "--config.model.preset=32b"], capture_output=True, text=True,
                         timeout=300, env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 1, out.stderr[-2000:]
    assert "DOES NOT FIT" in out.stdout and "32b visd_coach" in out.stdout


def test_model_path_reads_the_shapes_from_the_checkpoints_config_json(qwen_checkpoint):
    """--config.model.path: the checkpoint's config.json decides the shapes (its real 151k
    vocabulary here), not a preset; only the state is sized (no program compiled)."""
    import json

    path = qwen_checkpoint()
    c = visd_v5e.get_config("v5e_8")
    c.model.path = str(path)
    report = fit_report(c, "v5e:2x2", programs_only=("state",))
    assert str(path) in report.model and report.rows == ()
    raw = json.loads((path / "config.json").read_text())
    vocab = (raw.get("text_config") or raw)["vocab_size"]
    assert vocab > 150_000
    # float32 master weights: at least the (tied) embedding table, split over the 4 chips
    hidden = (raw.get("text_config") or raw)["hidden_size"]
    assert report.state["params"] >= 4 * vocab * hidden / 4
