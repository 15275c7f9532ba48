"""V-STAR metrics against hand-computed float64 values and the published row."""
import json
import math

import numpy as np
import pytest

from visd_jax.eval import vstar


def test_combine_reproduces_published_visioncoach_row():
    out = vstar.combine(acc=0.611, tiou_chain1=0.257, tiou_chain2=0.254, viou_chain1=0.272,
                        viou_chain2=0.053)
    assert round(out["mAM"], 1) == 34.3 and round(out["mLGM"], 1) == 47.5
    lgm1 = -(np.log(1 - 0.611) + np.log(1 - 0.257) + np.log(1 - 0.272)) / 3 * 100
    assert out["LGM1"] == pytest.approx(lgm1, rel=1e-12)
    assert out["AM2"] == pytest.approx((0.611 + 0.254 + 0.053) / 3 * 100, rel=1e-12)


def test_combine_guards_metrics_equal_to_one_and_rejects_bad_input():
    out = vstar.combine(acc=1.0, tiou_chain1=1.0, tiou_chain2=0.0, viou_chain1=1.0,
                        viou_chain2=0.0)
    assert all(math.isfinite(v) for v in out.values())
    assert out["LGM1"] == pytest.approx(-math.log(1e-6) * 100)
    assert out["AM1"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="viou_chain2"):
        vstar.combine(acc=0.5, tiou_chain1=0.1, tiou_chain2=0.1, viou_chain1=0.1,
                      viou_chain2=1.2)


def test_per_sample_tiou_and_viou():
    assert vstar.temporal_iou([2, 6], [4, 10]) == pytest.approx(2 / 8)
    assert vstar.temporal_iou([2, 6], None) == 0.0
    assert vstar.temporal_iou([2, 6], [7, 5]) == 0.0
    gt = {"1.0": [0, 0, 10, 10], "2.0": [0, 0, 10, 10], "3.0": [5, 5, 15, 15]}
    pred = {"1.0": [0, 0, 10, 5], "2.0": [[20, 20, 30, 30], [0, 0, 10, 10]]}
    ious = vstar.frame_ious(gt, pred)
    assert ious == pytest.approx([0.5, 1.0, 0.0])  # frame 3.0 has no prediction
    assert vstar.visual_iou(gt, pred) == pytest.approx(0.5)
    assert vstar.visual_iou(gt, None) == 0.0


def test_evaluate_recall_ap_and_cli(tmp_path, capsys):
    samples = [
        {"id": "a", "correct": True, "gt_span": [0, 10], "pred_span_1": [0, 10],
         "pred_span_2": [5, 15], "gt_boxes": {"1": [0, 0, 10, 10], "2": [0, 0, 10, 10]},
         "pred_boxes_1": {"1": [0, 0, 10, 10], "2": [0, 0, 10, 4]}, "pred_boxes_2": None},
        {"id": "b", "judge_score": 1, "gt_span": [0, 10], "pred_span_1": [0, 4],
         "pred_span_2": None, "gt_boxes": {"1": [0, 0, 10, 10]},
         "pred_boxes_1": {"1": [0, 0, 10, 8]}, "pred_boxes_2": {"1": [0, 0, 10, 2]}},
    ]
    m = vstar.evaluate(samples)
    assert m["Acc"] == 0.5
    assert m["tIoU1"] == pytest.approx((1.0 + 0.4) / 2)
    assert m["tIoU2"] == pytest.approx((5 / 15 + 0.0) / 2)
    assert (m["R1@tIoU0.3"], m["R1@tIoU0.5"], m["R1@tIoU0.7"]) == (1.0, 0.5, 0.5)
    assert m["vIoU1"] == pytest.approx(((1.0 + 0.4) / 2 + 0.8) / 2)
    assert m["vIoU2"] == pytest.approx((0.0 + 0.2) / 2)
    # sample a: frame IoUs (1.0, 0.4); sample b: (0.8,)
    assert m["AP1@vIoU0.5"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["AP1@vIoU0.9"] == pytest.approx((0.5 + 0.0) / 2)
    want = vstar.combine(acc=0.5, tiou_chain1=m["tIoU1"], tiou_chain2=m["tIoU2"],
                         viou_chain1=m["vIoU1"], viou_chain2=m["vIoU2"])
    assert m["mAM"] == want["mAM"] and m["mLGM"] == want["mLGM"]
    path = tmp_path / "pred.jsonl"
    path.write_text("\n".join(json.dumps(s) for s in samples) + "\n")
    assert vstar.main(["--predictions", str(path)]) == 0
    table = capsys.readouterr().out
    assert f"| mAM | {want['mAM']:.1f} |" in table and "| R1@tIoU0.3 | 100.0 |" in table
    with pytest.raises(ValueError, match="correct"):
        vstar.evaluate([{"gt_span": [0, 1]}])
