"""The VP-Selector's dataset, labels, prediction caches and report on canned inputs: the
collection with canned proxies (a `CannedSampler` that answers well only under one
visual prompt) on real synthetic clips and the real Qwen2 tokenizer; hand-computed
expectations for labels, accuracy and the prompted-reward table."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import data
from visd_jax import pipeline as P
from visd_jax.models import Qwen25VLConfig
from visd_jax.models.canvas import CanvasBuckets
from visd_jax.prompts import HINTS
from visd_jax.text import load_tokenizer, special_ids
from visd_jax.training.batch import RunContext
from visd_jax.training.rollouts import CannedSampler
from visd_jax.training.selector import CachedSelector, make_selector
from visd_jax.training.traces import trace
from visd_jax.vp_selector import dataset, report
from visd_jax.vp_selector.labels import read_predictions, write_predictions


@dataclasses.dataclass
class _Rl:
    prompts_per_step: int = 3


@dataclasses.dataclass
class _Cfg:
    rl: _Rl = dataclasses.field(default_factory=_Rl)


@dataclasses.dataclass
class FakeProxy:
    """What `collect` reads of a proxy Trainer, with a canned sampler instead of a model."""

    source: object
    example_cfg: object
    buckets: object
    pad_id: int
    ctx: object
    sampler: object
    cfg: _Cfg = dataclasses.field(default_factory=_Cfg)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, qwen_tokenizer_dir):
    ds = data.generate(tmp_path_factory.mktemp("synth"), seed=0, num_clips=1)
    src = P.StgrSource(ds.annotations, ds.video_root)
    cfg = P.ExampleConfig(tokenizer_dir=str(qwen_tokenizer_dir), max_frames=4, min_frames=4, max_pixels=56 * 56,
                          min_pixels=28 * 28, max_tokens=1024, max_patches=64)
    tok = load_tokenizer(str(qwen_tokenizer_dir))
    sp = special_ids(tok)
    ctx = RunContext.create(Qwen25VLConfig.preset("tiny"), sp, token_buckets=(512, 1024),
                            vision=CanvasBuckets.for_area(16, 32), tokenizer=tok)
    metas = [P.make_example(src[i], cfg)["meta"] for i in range(len(src))]  # as the rewards see them

    def texts(n, ids):
        """The gold trace when the darken hint is in the prompt, nonsense otherwise."""
        text = tok.decode([int(i) for i in ids if i != sp.pad])
        meta = next(m for m in metas if m["question"] in text)
        return [trace(meta) if HINTS["darken"].strip() in text else "I cannot tell."] * 2

    sampler = CannedSampler(tok, texts, stop_id=sp.im_end, pad_id=sp.pad, length=1024)
    return FakeProxy(src, cfg, P.Buckets(tokens=(512, 1024), patches=(64,)), sp.pad, ctx, sampler)


def test_collect_labels_the_kind_that_helps_and_resumes(proxy, tmp_path):
    path = tmp_path / "selector_data.jsonl"
    stats = dataset.collect([dataset.Proxy("a", proxy), dataset.Proxy("b", proxy)], str(path), num_generations=2,
                            holdout=0.3, limit=4)
    assert stats == {"written": 4, "skipped": 0, "already": 0}
    rows = dataset.read_rows(str(path))
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    for r in rows:
        assert set(r["scores"]["raw"]) == {"acc", "grounding", "total"} and len(r["scores"]["raw"]["acc"]) == 2
        # only darkening earns a reward: it is the label wherever darkening could be applied
        assert r["label"] == ("darken" if "darken" in r["scores"] else "raw")
        assert r["heldout"] == dataset.is_heldout(r["id"], 0.3)
    assert any(r["label"] == "darken" for r in rows)
    assert "numbers" in rows[0]["scores"]  # frame numbers need no boxes: always a candidate
    # a kill mid-write leaves a torn line: dropped, and nothing is scored twice
    with open(path, "a") as f:
        f.write('{"id": "torn')
    again = dataset.collect([dataset.Proxy("a", proxy), dataset.Proxy("b", proxy)], str(path), num_generations=2,
                            holdout=0.3, limit=5)
    assert again == {"written": 1, "skipped": 0, "already": 4}
    assert [r["index"] for r in dataset.read_rows(str(path))] == [0, 1, 2, 3, 4]


def test_label_ties_go_to_raw_then_kind_order():
    e = lambda acc, g: {"acc": [acc], "grounding": [g], "total": [acc + g]}  # noqa: E731
    assert dataset.label_of({"raw": e(1, 0.5), "darken": e(0.5, 1.0), "circle": e(1, 0.4)}) == "raw"
    assert dataset.label_of({"raw": e(0, 0), "numbers": e(1, 0), "circle": e(0.5, 0.5)}) == "circle"
    # the mean over proxies decides
    two = {"raw": {"acc": [1, 0], "grounding": [0, 0]}, "darken": {"acc": [0, 0], "grounding": [0.6, 0.6]}}
    assert dataset.label_of(two) == "darken"
    ids = [f"ex{i}" for i in range(2000)]
    held = [dataset.is_heldout(i, 0.25) for i in ids]
    assert held == [dataset.is_heldout(i, 0.25) for i in ids] and 0.2 < np.mean(held) < 0.3


def test_prediction_caches_ours_and_the_releases(tmp_path):
    ours = tmp_path / "ours.json"
    write_predictions(str(ours), {"a": {"raw": 0.1, "darken": 0.2, "numbers": 0.7}, "b": {"circle": 0.5, "raw": 0.5}})
    assert read_predictions(str(ours)) == {"a": "numbers", "b": "raw"}  # a tie goes to the earlier kind
    assert json.loads(ours.read_text())["predictions"]["a"]["probs"]["attention"] == 0.0
    rel = tmp_path / "release.json"
    rel.write_text(json.dumps({"v1": 1, "v2": 0}))
    assert read_predictions(str(rel)) == {"v1": "darken", "v2": "raw"}
    sel = make_selector(f"cached:{rel}")
    assert isinstance(sel, CachedSelector)
    assert sel.candidates([{"id": "v1"}, {"id": "v3"}]) == [("darken",), ("raw",)] and sel.misses == 1
    for bad, msg in (({"x": "blur"}, "unknown kind 'blur'"), ({"x": 2}, "0 .raw. or 1 .darken."),
                     ({"x": True}, "expected a kind name"), ([1], "JSON object")):
        p = tmp_path / "bad.json"
        p.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=msg):
            read_predictions(str(p))
    with pytest.raises(ValueError, match="unknown kinds"):
        write_predictions(str(tmp_path / "w.json"), {"a": {"blur": 1.0}})


def test_config_rejects_unknown_selectors_and_kinds_at_start_up(tmp_path):
    from visd_jax.training.config import base_config, check_paths, validate

    for spec in ("fixed:blur", "cached:", "learned", "best"):
        c = base_config()
        c.coach.selector = spec
        with pytest.raises(ValueError, match="coach.selector"):
            validate(c)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"x": "blur"}))
    c = base_config()
    c.coach.selector = f"cached:{bad}"
    validate(c)
    with pytest.raises(ValueError, match="unknown kind 'blur'"):
        check_paths(c)
    c.coach.selector = f"learned:{tmp_path}"
    with pytest.raises(ValueError, match="no selector_config.json"):
        check_paths(c)


def _row(rid, label, heldout, **totals):
    """A dataset row whose kinds score `totals` (acc = total / 2, grounding = total / 2)."""
    return {"id": rid, "index": 0, "heldout": heldout, "label": label,
            "scores": {k: {"acc": [v / 2], "grounding": [v / 2], "total": [v]} for k, v in totals.items()}}


def test_report_accuracy_and_prompted_reward_by_hand():
    rows = [_row("t1", "raw", False, raw=1), _row("t2", "raw", False, raw=1), _row("t3", "darken", False, raw=1),
            # held out: h1 hard (raw 1 < 2.21), darken helps; h2 hard, no boxes (darken not applicable),
            # numbers helps; h3 easy
            _row("h1", "darken", True, raw=1.0, darken=3.0, numbers=0.5),
            _row("h2", "numbers", True, raw=0.5, numbers=2.5),
            _row("h3", "raw", True, raw=4.0, darken=3.0)]
    preds = {"h1": {"darken": 0.9, "raw": 0.1}, "h2": {"darken": 0.6, "numbers": 0.4}, "h3": {"raw": 1.0}}
    out = report.evaluate(rows, preds, hard_threshold=2.21)
    assert out["majority"] == "raw" and out["heldout"] == 3 and out["hard"] == 2
    acc = out["accuracy"]
    assert acc["learned"] == pytest.approx(2 / 3)  # h2's darken is wrong
    assert acc["majority (raw)"] == pytest.approx(1 / 3) and acc["random (expected)"] == 0.2
    r = out["reward"]
    # learned: h1 darken 3.0, h2 darken is not applicable -> raw 0.5
    assert r["learned/hard"] == pytest.approx((3.0 + 0.5) / 2)
    assert r["fixed:darken/hard"] == pytest.approx((3.0 + 0.5) / 2)
    assert r["raw/hard"] == pytest.approx((1.0 + 0.5) / 2)
    assert r["oracle/hard"] == pytest.approx((3.0 + 2.5) / 2)
    assert r["learned/all"] == pytest.approx((3.0 + 0.5 + 4.0) / 3)
    assert r["oracle/hard_label_score"] == pytest.approx((3.0 + 2.5) / 2)  # acc + grounding = total here
    md = report.tables(dataset.summary(rows), out)
    assert "| learned | 0.667 |" in md and "| oracle | 2.750 |" in md
