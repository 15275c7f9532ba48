"""The study's numbers on canned curves, against values worked out by hand."""
from __future__ import annotations

import pytest

from visd_jax.eval import study


def test_curve_takes_the_last_row_of_a_step_and_the_base():
    rows = [{"step": 5, "eval/total": 1.0}, {"step": 5, "eval/total": 1.5}, {"step": 3, "reward/total": 2.0},
            {"step": 10, "eval/total": 2.0}]
    assert study.curve(rows, "eval/total", base=0.5) == [(0, 0.5), (5, 1.5), (10, 2.0)]


def test_summarise_final_auc_and_steps_to_gspo():
    heldout = {
        # GSPO: 1 -> 2 -> 3 (seed a) and 1 -> 2 -> 2 (seed b): final 2.5 +- 0.707, reaches 2.5 at step 20
        "gspo": [[(0, 1.0), (10, 2.0), (20, 3.0)], [(0, 1.0), (10, 2.0), (20, 2.0)]],
        # faster: mean 1 -> 2.5 -> 3: reaches 2.5 at step 10 (ratio 0.5); AUC (17.5 + 27.5) / 20 = 2.25
        "visd": [[(0, 1.0), (10, 2.5), (20, 3.0)], [(0, 1.0), (10, 2.5), (20, 3.0)]],
        "slow": [[(0, 1.0), (10, 1.0), (20, 1.5)]],  # never
    }
    s = study.summarise(heldout)
    assert s["gspo"]["final"] == pytest.approx(2.5) and s["gspo"]["final_std"] == pytest.approx(2 ** 0.5 / 2)
    # AUC / span: seed a (1.5 * 10 + 2.5 * 10) / 20 = 2.0, seed b (15 + 20) / 20 = 1.75
    assert s["gspo"]["auc"] == pytest.approx(1.875)
    assert (s["gspo"]["reach"], s["visd"]["reach"], s["slow"]["reach"]) == (20, 10, None)
    assert s["visd"]["reach_ratio"] == pytest.approx(0.5) and s["slow"]["reach_ratio"] is None
    assert s["slow"]["final_std"] == 0.0 and s["slow"]["seeds"] == 1
    md = study.table(s)
    assert "| visd | 2 | 3.000 +- 0.000 | 2.250 +- 0.000 | 10 | 0.50 |" in md and "| slow | 1 |" in md
    with pytest.raises(ValueError, match="no evaluated step"):
        study.summarise({"x": [[(0, 1.0)], [(5, 1.0)]]})


def test_figure_writes_a_png(tmp_path):
    curves = {"gspo": [[(0, 1.0), (1, 2.0), (2, 1.5)], [(0, 1.2), (1, 1.8), (2, 2.0)]]}
    out = study.figure(curves, curves, tmp_path / "f" / "study.png", ceiling=3.0, title="t")
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
