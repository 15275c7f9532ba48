import math

import jax
import numpy as np
import pytest
from flax import nnx

from visd_jax.training import inputs
from visd_jax.training.trainer import Trainer

pytestmark = pytest.mark.slow


# (visd alone: its RL step runs, and is checked the same way, in the model-judge test below;
# visioncoach and visd_coach: in tests/experiments/test_study_smoke.py, which runs every mode)
@pytest.mark.parametrize("mode", ["gspo"])
def test_every_mode_runs_a_few_steps(make_config, mode):
    # No warmup (it gives the first update lr 0) and an lr that moves the weights visibly
    # even when every advantage is 0: a 1-step-SFT policy rarely earns a reward, and whether
    # one group's rewards differ depends on the machine's float rounding. GSPO runs with LoRA
    # and the release's reference KL (its reference: the frozen base, no copy).
    lora = {"model.lora.rank": 2, "rl.ref_kl_beta": 0.04} if mode == "gspo" else {}
    cfg = make_config(mode=mode, **{"rl.warmup_steps": 0, "rl.lr": 1e-2, **lora})
    run = Trainer(cfg)
    base0 = jax.device_get(nnx.split_state(run.state["params"], nnx.LoRAParam, ...)[1]) if lora else None
    rows = run.run()
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[0]["phase"] == "sft" and math.isfinite(rows[0]["sft/loss"])
    rl = rows[1:]
    for r in rl:
        assert r["phase"] == "rl" and 0.0 <= r["reward/total"] <= 7.0
        assert math.isfinite(r["train/loss"]) and r["train/skipped"] == 0
        assert r["train/gspo/num_sequences"] == 2.0  # 4 rollouts in 2 minibatches
    coach = mode in ("visioncoach", "visd_coach")
    visd = mode in ("visd", "visd_coach")
    assert ("coach/hard_frac" in rl[0]) == coach
    assert ("train/visd/weight_mean" in rl[0]) == visd
    if visd:
        assert rl[0]["visd/lambda"] == pytest.approx(0.5)
        assert rl[1]["visd/lambda"] == pytest.approx(0.45)
        assert any(k.startswith("judge/") for k in rl[0])
    # second minibatch is off-policy: the ratio has moved away from 1
    assert rl[-1]["train/gspo/ratio_max"] != 1.0 or rl[-1]["train/gspo/ratio_min"] != 1.0
    if lora:
        _check_lora_run(cfg, run, base0, rl)


def _check_lora_run(cfg, run, base0, rl):
    """Only adapters moved and were saved; a restart rebuilds the base and restores them."""
    assert run.state["ref"] is None and math.isfinite(rl[-1]["train/ref_kl/kl"]) and rl[-1]["train/ref_kl/kl"] >= 0
    lora, base = nnx.split_state(jax.device_get(run.state["params"]), nnx.LoRAParam, ...)
    for a, b in zip(jax.tree.leaves(base0), jax.tree.leaves(base)):
        np.testing.assert_array_equal(a, b)
    saved = run.ckpt.saved_shapes(3)
    assert any("['lora']" in n for n in saved)
    assert not [n for n in saved if n.startswith("['params']") and "['lora']" not in n]
    again = Trainer(cfg)
    assert again.start == 3
    for a, b in zip(jax.tree.leaves(jax.device_get(run.state["params"])),
                    jax.tree.leaves(jax.device_get(again.state["params"]))):
        np.testing.assert_array_equal(a, b)


def test_sft_only_mode(make_config):
    rows = Trainer(make_config(mode="sft", sft_steps=2, rl_steps=0)).run()
    assert [r["phase"] for r in rows] == ["sft", "sft"]


@pytest.mark.parametrize("view", ["prompted", "privileged"])
def test_sft_trains_on_each_prompt_form(make_config, view):
    cfg = make_config(mode="sft", sft_steps=2, rl_steps=0, **{"sft.prompted_frac": float(view == "prompted"),
                                                              "sft.privileged_frac": float(view == "privileged")})
    rows = Trainer(cfg).run()
    assert [r.get(f"sft/view_{view}") for r in rows] == [1.0, 1.0]
    assert all(math.isfinite(r["sft/loss"]) and r["sft/skipped"] == 0 for r in rows)


def test_teacher_starts_rl_as_the_sft_model(make_config):
    """SPEC 6: the EMA teacher is initialised from the policy RL starts from. After an SFT
    stage that is the SFT model, not the random init the teacher was copied from."""
    cfg = make_config(mode="visd", sft_steps=2, rl_steps=0)
    sft_run = Trainer(cfg)
    sft_run.run()
    p_sft = jax.device_get(sft_run.state["params"])
    cfg.rl.steps = 1
    rl_run = Trainer(cfg)
    assert rl_run.start == 2
    rl_run.run()
    p, t = jax.device_get(rl_run.state["params"]), jax.device_get(rl_run.state["teacher"])
    want = jax.tree.map(lambda a, b: 0.99 * a + 0.01 * b, p_sft, p)
    for w, got in zip(jax.tree.leaves(want), jax.tree.leaves(t)):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)


def test_resume_across_modes_starts_or_drops_the_teacher(make_config):
    """gspo checkpoint -> visd run: the teacher (absent from the checkpoint) starts as the
    restored policy; visd checkpoint -> gspo run: the saved teacher is ignored."""
    cfg = make_config(mode="gspo", sft_steps=1, rl_steps=1)
    Trainer(cfg).run()
    cfg.mode, cfg.rl.steps = "visd", 2
    visd = Trainer(cfg)
    assert visd.start == 2
    p2 = jax.device_get(visd.state["params"])
    for a, b in zip(jax.tree.leaves(p2), jax.tree.leaves(jax.device_get(visd.state["teacher"]))):
        np.testing.assert_array_equal(a, b)
    visd.run()
    want = jax.tree.map(lambda a, b: 0.99 * a + 0.01 * b, p2, jax.device_get(visd.state["params"]))
    for w, t in zip(jax.tree.leaves(want), jax.tree.leaves(jax.device_get(visd.state["teacher"]))):
        np.testing.assert_allclose(t, w, rtol=1e-5, atol=1e-6)
    cfg.mode, cfg.rl.steps = "gspo", 3
    rows = Trainer(cfg).run()
    assert [r["step"] for r in rows][-1] == 4


def test_resume_from_another_model_is_a_clear_error(make_config):
    cfg = make_config(mode="sft", sft_steps=1, rl_steps=0)
    Trainer(cfg).run()
    cfg.model.preset = "small"
    with pytest.raises(ValueError, match=r"does not fit this run.*another shape.*embed_tokens"):
        Trainer(cfg)


def test_model_judge_grades_with_the_policy_and_counts_fallbacks(make_config):
    """visd.judge='model' with no judge_path: the policy reads the rubric (greedy, batched).
    The tiny random policy cannot write the JSON verdict, so every rollout falls back to the
    annotation judge and the metric says so; the step still trains."""
    cfg = make_config(mode="visd", rl_steps=1, **{"visd.judge": "model", "visd.judge_max_new_tokens": 8,
                                                  "visd.judge_max_prompt_tokens": 256})
    tr = Trainer(cfg)
    rows = tr.run()
    rl = rows[-1]
    assert rl["judge/fallback_frac"] == 1.0
    assert tr.judge.judge.calls == 4  # 2 prompts x 2 rollouts, in one batched call
    assert math.isfinite(rl["train/loss"]) and rl["train/skipped"] == 0
    # visd alone (no coach): what test_every_mode checks of the other modes
    assert "coach/hard_frac" not in rl and "train/visd/weight_mean" in rl and "train/sd/nll" not in rl
    assert rl["visd/lambda"] == pytest.approx(0.5) and rl["train/gspo/num_sequences"] == 2.0


def test_judge_generator_batches_like_one_prompt_at_a_time():
    """Greedy replies of a left-padded batch equal each prompt's reply alone."""
    from visd_jax.models import Qwen25VL, Qwen25VLConfig
    from visd_jax.text import load_tokenizer
    from visd_jax.training.judging import batch_generator

    tok = load_tokenizer()
    model = Qwen25VL.create(Qwen25VLConfig.preset("tiny"), seed=1)
    gen = batch_generator(lambda: model, tok, max_new_tokens=6, max_prompt_tokens=128, buckets=(64, 128),
                          pad_id=tok.convert_tokens_to_ids("<|endoftext|>"),
                          stop_ids=(tok.convert_tokens_to_ids("<|im_end|>"),))
    prompts = ["Grade this.", "The red ball moves left at 3 s; grade the answer From 2 s to 4 s.", "ok"]
    together = gen(prompts)
    assert together == [gen([p])[0] for p in prompts]
    assert all(isinstance(r, str) for r in together) and any(together)


def test_rows_keep_images_and_videos_and_drop_padding():
    batch = {"meta": [{"task": "temporal QA"}, {"task": "visual QA"}, {"task": "General video QA MCQ"}, {}],
             "example_mask": np.array([True, True, True, False])}
    assert Trainer._rows(None, batch) == [0, 1, 2]
    with pytest.raises(ValueError, match="no real example"):
        Trainer._rows(None, {"meta": [{}], "example_mask": np.array([False])})


def test_visual_qa_images_train_next_to_videos(make_config):
    """Synthetic set with its visual-QA images: SFT and a visd_coach RL step take image
    rows (pixel_values / image_grid_thw) and video rows in the same batches."""
    # one clip: 5 video questions + 1 image; batches of 6 hold every record, the image too
    cfg = make_config(mode="visd_coach", sft_steps=2, rl_steps=2,
                      **{"data.synthetic_images": True, "data.synthetic_examples": 6, "sft.batch_size": 6,
                         "rl.prompts_per_step": 6, "sft.prompted_frac": 0.5, "sft.privileged_frac": 0.5})
    tr = Trainer(cfg)
    tasks = [tr.source[i]["record"]["task"] for i in range(len(tr.source))]
    assert len(tasks) == 6 and tasks.count("visual QA") == 1
    batch = next(tr.rl_iter)  # (the run then starts from the next batch: fine here)
    kinds = [blk.kind for b in tr._rows(batch) for blk in inputs.blocks_of_row(batch, b)]
    assert kinds.count("image") == 1 and "video" in kinds
    rows = tr.run()
    assert all(math.isfinite(r.get("sft/loss", r.get("train/loss"))) for r in rows)
    assert all(r.get("train/skipped", r.get("sft/skipped")) == 0 for r in rows)


def test_reference_kl_keeps_a_frozen_copy_and_the_teacher_stops_with_its_schedule(make_config):
    """rl.ref_kl_beta > 0 without LoRA: a reference copy of the policy RL starts from, never
    updated; visd.lambda_steps = 0: the teacher never teaches, so no EMA moves it."""
    cfg = make_config(mode="visd", sft_steps=0, rl_steps=1, **{"rl.ref_kl_beta": 0.04, "rl.lr": 1e-2,
                                                               "rl.warmup_steps": 0, "visd.lambda_steps": 0})
    run = Trainer(cfg)
    rows = run.run()
    assert "train/ref_kl/kl" in rows[-1] and "train/visd/weight_mean" not in rows[-1]
    p, ref, t = (jax.device_get(run.state[k]) for k in ("params", "ref", "teacher"))
    # the reference and the teacher both hold the policy RL started from
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(t)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(p)))
