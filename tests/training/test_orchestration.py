"""The RL step's host orchestration with canned completions (`rollouts.CannedSampler`): no
model is compiled, so rollouts -> rewards, coach routing and candidate choice, the
self-distillation rows, the teacher's rows and the minibatch plan run in milliseconds, on
pipeline batches of real synthetic clips and the real Qwen2 tokenizer."""
from __future__ import annotations

import numpy as np
import pytest

import data
from visd_jax import pipeline as P
from visd_jax.models import Qwen25VLConfig
from visd_jax.models.canvas import CanvasBuckets
from visd_jax.prompts import HINTS
from visd_jax.text import load_tokenizer, special_ids
from visd_jax.training.batch import RunContext
from visd_jax.training.coach import coach
from visd_jax.training.rollouts import CannedSampler, rollout, teacher_batch
from visd_jax.training.routing import minibatch_rows
from visd_jax.training.selector import FixedSelector, OracleSelector
from visd_jax.training.traces import trace

G = 2
NONSENSE = "I cannot tell."


@pytest.fixture(scope="module")
def world(tmp_path_factory, qwen_tokenizer_dir):
    ds = data.generate(tmp_path_factory.mktemp("synth"), seed=0, num_clips=1)
    src = P.StgrSource(ds.annotations, ds.video_root)
    cfg = P.ExampleConfig(tokenizer_dir=str(qwen_tokenizer_dir), max_frames=4, min_frames=4,
                          max_pixels=56 * 56, min_pixels=28 * 28, max_tokens=1024, max_patches=64)
    tok = load_tokenizer(str(qwen_tokenizer_dir))
    sp = special_ids(tok)
    buckets = P.Buckets(tokens=(512, 1024), patches=(64,))
    examples = [P.make_example(src[i], cfg) for i in range(2)]
    batch = P.pad_batch(examples, batch_size=2, buckets=buckets, max_frames=4, pad_id=sp.pad)
    batch["meta"] = [{**m, "index": i} for i, m in enumerate(batch["meta"])]
    ctx = RunContext.create(Qwen25VLConfig.preset("tiny"), sp, token_buckets=(512, 1024),
                            vision=CanvasBuckets.for_area(16, 32), tokenizer=tok)
    return dict(src=src, cfg=cfg, tok=tok, sp=sp, batch=batch, ctx=ctx, buckets=buckets)


def _sampler(w, good_when):
    """Gold traces for prompts whose text satisfies `good_when`, NONSENSE otherwise."""
    metas = w["batch"]["meta"]
    tok = w["tok"]

    def texts(n, ids):
        text = tok.decode([int(i) for i in ids if i != w["sp"].pad])
        meta = next(m for m in metas if m["question"].split("?")[0] in text)
        return [trace(meta) if good_when(text) else NONSENSE] * G

    return CannedSampler(tok, texts, stop_id=w["sp"].im_end, pad_id=w["sp"].pad, length=256)


def test_rollouts_score_and_share_each_prompts_media(world):
    w = world
    s = _sampler(w, good_when=lambda text: True)
    ro = rollout(s, w["batch"], [0, 1], ctx=w["ctx"], key=None, num_samples=G, progress=0.0)
    assert ro.scores["total"].shape == (2, G) and (ro.scores["format"] == 1).all()
    assert (ro.scores["total"] > 2.0).all()  # the gold trace earns answer and grounding rewards
    b = ro.batch(w["ctx"])
    assert b.rows == 2 * G and b.media.valid.sum() == 2 * 2 * 2 * 4  # 2 prompts x 2 blocks x 2x4
    np.testing.assert_array_equal(b.src[0], b.src[1])  # a prompt's G rollouts read one canvas
    assert not np.array_equal(b.src[0], b.src[G])
    assert s.calls[0][0] is not None  # the sampler got bucketed prompts


def test_coach_routes_hard_prompts_to_the_kind_that_helps(world):
    w = world
    raw = rollout(_sampler(w, lambda t: False), w["batch"], [0, 1], ctx=w["ctx"], key=None, num_samples=G,
                  progress=0.0)
    helps = _sampler(w, lambda t: HINTS["darken"].strip() in t)  # only darkening gets it right
    res = coach(raw, w["batch"], ctx=w["ctx"],
                do_rollout=lambda pb: rollout(helps, pb, list(range(len(pb["meta"]))), ctx=w["ctx"], key=None,
                                              num_samples=G, progress=0.0),
                source=w["src"], selector=OracleSelector(), example_cfg=w["cfg"], buckets=w["buckets"],
                max_frames=4, threshold=2.0, top_n=1, rule="total")
    assert res.stats["coach/hard_frac"] == 1.0 and res.stats["coach/kind_darken"] == 1.0
    assert res.stats["coach/sd_rows"] == 2 and res.selected.tolist() == [1, 1]
    assert res.prompt.tolist() == [0, 1]  # each row names the prompt it was distilled for
    sd = res.batch
    assert sd.media.slots == raw.batch(w["ctx"]).media.slots  # one shape however many were coached
    for r in range(2):  # each kept row: the darkened prompt (its hint) and its gold completion
        prompt = w["tok"].decode([int(i) for i in sd.ids[r, :-sd.targets.shape[1]] if i != w["sp"].pad])
        assert HINTS["darken"].strip() in prompt
        got = w["tok"].decode([int(t) for t, m in zip(sd.targets[r], sd.tmask[r]) if m][:-1])
        assert got == trace(w["batch"]["meta"][r])
    # nothing helps: every prompt stays hard and nothing is distilled
    res = coach(raw, w["batch"], ctx=w["ctx"], do_rollout=lambda pb: raw, source=w["src"],
                selector=FixedSelector("darken"),
                example_cfg=w["cfg"], buckets=w["buckets"], max_frames=4, threshold=2.0, top_n=1, rule="total")
    assert res.batch is None and res.stats["coach/sd_rows"] == 0


def test_teacher_rows_add_the_privileged_block_and_keep_the_completion(world):
    w = world
    ro = rollout(_sampler(w, lambda t: True), w["batch"], [0, 1], ctx=w["ctx"], key=None, num_samples=G,
                 progress=0.0)
    student = ro.batch(w["ctx"])
    tb, stats = teacher_batch(ro, w["batch"], ctx=w["ctx"])
    np.testing.assert_array_equal(tb.targets, student.targets)
    np.testing.assert_array_equal(tb.media.pixels, student.media.pixels)
    assert tb.ids.shape[1] > student.ids.shape[1] or (tb.mask.sum(1) > student.mask.sum(1)).all()
    assert sum(v for k, v in stats.items() if k.startswith("judge/")) == pytest.approx(1.0)
    text = w["tok"].decode([int(i) for i in tb.ids[0] if i != w["sp"].pad])
    assert text.index("<|im_end|>\n<|im_start|>assistant") > text.index(w["batch"]["meta"][0]["question"])


def test_minibatch_plan_puts_each_prompts_sd_rows_with_its_rollouts():
    # 5 prompts x G=4 = 20 rows in 2 minibatches of 10: prompts 0, 1, 2 start in minibatch 0
    # (prompt 2 straddles), 3 and 4 in minibatch 1; at most 3 start in one, top-2: 6 SD slots
    sd_prompt = np.array([0, 0, 2, 4, -1, -1, 1, -1, -1, -1])
    plan = minibatch_rows(20, 2, sd_prompt, group=4, per_prompt=2)
    assert [m.rows.tolist() for m in plan] == [list(range(10)), list(range(10, 20))]
    assert [m.sd_rows.tolist() for m in plan] == [[0, 1, 2, 6, -1, -1], [3, -1, -1, -1, -1, -1]]
    # release weighting: 1 / (|S_p| * prompts in the minibatch), 10 rows / G = 2.5 prompts
    np.testing.assert_allclose(plan[0].sd_weight, [1 / 5, 1 / 5, 2 / 5, 2 / 5, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(plan[1].sd_weight, [2 / 5, 0, 0, 0, 0, 0], rtol=1e-6)
    # the paper's: the mean over the minibatch's S rows
    plan = minibatch_rows(20, 2, sd_prompt, group=4, per_prompt=2, weighting="row")
    np.testing.assert_allclose(plan[0].sd_weight, [1 / 4] * 4 + [0, 0], rtol=1e-6)
    np.testing.assert_allclose(plan[1].sd_weight, [1, 0, 0, 0, 0, 0], rtol=1e-6)
    # one prompt, 4 minibatches (fewer prompts than minibatches): its rows still go somewhere
    plan = minibatch_rows(8, 4, np.array([0, 0]), group=8, per_prompt=2)
    assert [m.sd_rows.tolist() for m in plan] == [[0, 1], [-1, -1], [-1, -1], [-1, -1]]
    np.testing.assert_allclose(plan[0].sd_weight, [2, 2])  # 2 rows / G=8: a quarter prompt
    # on 4 batch shards, the SD parts are padded to 4 rows: no chip holds every SD row
    plan = minibatch_rows(20, 2, sd_prompt, group=4, per_prompt=2, multiple=4)
    assert [len(m.sd_rows) for m in plan] == [8, 8]
    assert all(m.sd_rows is None for m in minibatch_rows(8, 4))
    with pytest.raises(ValueError, match="equal minibatches"):
        minibatch_rows(10, 4)
    with pytest.raises(ValueError, match="more than per_prompt"):
        minibatch_rows(20, 2, np.array([1, 1, 1]), group=4, per_prompt=2)
    with pytest.raises(ValueError, match="the step has 5"):
        minibatch_rows(20, 2, np.array([5]), group=4, per_prompt=2)
