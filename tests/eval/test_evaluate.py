"""The evaluation job on a policy trained for a step: predictions re-score to the summary,
and an evaluation killed mid-run resumes to the same file as an uninterrupted one."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from tests.training.conftest import tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A policy trained for one SFT step, evaluated while training: (config, metrics)."""
    from visd_jax.training.trainer import Trainer

    cfg = tiny_config(tmp_path_factory.mktemp("trained"), mode="sft", sft_steps=1, rl_steps=0)
    cfg.eval.update(examples=5, batch_size=2, every=1, max_new_tokens=12)  # and evaluated while training
    return cfg, Trainer(cfg).run()


def test_evaluate_a_trained_run_resume_and_rescore(tmp_path, trained):
    from visd_jax import rewards as rw
    from visd_jax.eval.run import evaluate, read_predictions, summarise, table
    from visd_jax.training.policy import load_policy
    from visd_jax.training.setup import build_eval_data, run_inputs

    cfg, trained = trained
    assert trained[-1]["eval/examples"] == 5 and 0 <= trained[-1]["eval/total"] <= 7
    assert len(read_predictions(f"{cfg.workdir}/eval/step_1/predictions.jsonl")) == 5
    p = load_policy(workdir=cfg.workdir)
    io = run_inputs(p.config, p.model.config, p.tokenizer, p.tokenizer_dir, blocks_per_batch=2)
    source = build_eval_data(cfg, cfg.workdir)
    kw = dict(batch_size=2, max_new_tokens=12, progress=False)
    whole = evaluate(lambda: p.model, source, io, str(tmp_path / "whole"), **kw)
    assert whole["examples"] == len(source) == 5 and whole["unusable"] == 0
    assert whole["all"]["total"] == pytest.approx(trained[-1]["eval/total"])  # the job = the in-training eval
    # killed after the first batch, then restarted: the same rows, none twice
    evaluate(lambda: p.model, source, io, str(tmp_path / "cut"), stop_after=1, **kw)
    assert len(read_predictions(str(tmp_path / "cut" / "predictions.jsonl"))) == 2
    with open(tmp_path / "cut" / "predictions.jsonl", "a") as f:
        f.write('{"id": "torn')  # a kill mid-write
    again = evaluate(lambda: p.model, source, io, str(tmp_path / "cut"), **kw)
    a = (tmp_path / "whole" / "predictions.jsonl").read_text()
    assert (tmp_path / "cut" / "predictions.jsonl").read_text() == a
    assert {k: v for k, v in again.items() if k != "throughput"} == {k: v for k, v in whole.items() if k != "throughput"}
    assert again["throughput"]["generated"] == 3 and whole["throughput"]["generated"] == 5
    # the summary is the rewards of the written completions, scored again from the file
    rows = read_predictions(str(tmp_path / "whole" / "predictions.jsonl"))
    from visd_jax.pipeline import make_example

    metas = {m["id"]: m for m in (make_example(source[i], io.example_cfg)["meta"] for i in range(len(source)))}
    for r in rows:
        s = rw.score_group([r["completion"]], metas[r["id"]], progress=1.0)
        assert {k: float(v[0]) for k, v in s.items()} == pytest.approx(r["scores"])
    assert summarise(rows)["all"]["total"] == pytest.approx(np.mean([r["scores"]["total"] for r in rows]))
    assert "| all | 5 |" in table(whole)
    # held out: none of the evaluation records is a training record
    from visd_jax.training.setup import build_data

    train = build_data(cfg, cfg.workdir)
    assert not {r["id"] for r in rows} & {train.record(i)["id"] for i in range(len(train))}


def test_vstar_chains_on_a_policy_resume_and_rescore(tmp_path, trained):
    from data import vstar as synth_vstar
    from visd_jax.eval import vstar
    from visd_jax.eval.run import read_predictions
    from visd_jax.eval.vstar_chain import PREDICTIONS, VStarSet, evaluate_vstar
    from visd_jax.training.policy import load_policy
    from visd_jax.training.setup import heldout_synthetic, run_inputs
    cfg = copy.deepcopy(trained[0])
    cfg.eval.examples = 10  # two held-out clips: two V-STaR items
    p = load_policy(workdir=cfg.workdir)
    io = run_inputs(p.config, p.model.config, p.tokenizer, p.tokenizer_dir, blocks_per_batch=5, prompt_tokens=1024)
    ds = heldout_synthetic(cfg, cfg.workdir)
    vset = VStarSet(synth_vstar.write(ds), ds.video_root)
    assert len(vset) == 2 and vset.video("clip_0001").name == "clip_0001.mp4"
    kw = dict(items_per_call=1, max_new_tokens=12, progress=False)
    whole = evaluate_vstar(lambda: p.model, vset, io, str(tmp_path / "whole"), **kw)
    assert whole["items"] == 2 and whole["unusable"] == 0 and whole["throughput"]["questions"] == 10
    evaluate_vstar(lambda: p.model, vset, io, str(tmp_path / "cut"), stop_after=1, **kw)  # killed after one item
    again = evaluate_vstar(lambda: p.model, vset, io, str(tmp_path / "cut"), **kw)
    assert again["throughput"]["questions"] == 5  # only the item not yet in the file
    assert (tmp_path / "cut" / PREDICTIONS).read_text() == (tmp_path / "whole" / PREDICTIONS).read_text()
    rows = read_predictions(str(tmp_path / "whole" / PREDICTIONS))
    assert again["metrics"] == whole["metrics"] == vstar.evaluate(rows)  # the table is the file's
    assert set(rows[0]["completions"]) == {"vqa", "temporal", "spatial", "spatial_2", "temporal_2"}
    # a judge model (here the policy itself) rates the "what" answers with V-STaR's prompt; a
    # reply that is not a rating counts as 0 and is counted
    from experiments.evaluate import judge_of

    cfg.eval.judge = "policy"
    judged = evaluate_vstar(lambda: p.model, vset, io, str(tmp_path / "judged"), judge=judge_of(cfg, p), limit=1, **kw)
    row = read_predictions(str(tmp_path / "judged" / PREDICTIONS))[0]
    assert row["judge"] == "model" and row["judge_score"] in (0, 1, 2, 3)
    assert 0 <= judged["judge_unreadable"] <= 1 and judged["items"] == 1
