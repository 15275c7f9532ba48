"""SFT views (training/sft.py): which prompt form a cold-start step trains on."""
import numpy as np
import pytest

from visd_jax.judge import AnnotationJudge, privileged_block
from visd_jax.text import load_tokenizer
from visd_jax.training import sft
from visd_jax.training.traces import trace


def test_view_of_step_is_a_pure_function_of_seed_and_step():
    a = [sft.view_of_step(s, seed=3, prompted_frac=0.3, privileged_frac=0.2) for s in range(50)]
    b = [sft.view_of_step(s, seed=3, prompted_frac=0.3, privileged_frac=0.2) for s in range(50)]
    c = [sft.view_of_step(s, seed=4, prompted_frac=0.3, privileged_frac=0.2) for s in range(50)]
    assert a == b
    assert a != c


def test_view_fractions_hold_over_many_steps():
    n = 4000
    views = [sft.view_of_step(s, seed=0, prompted_frac=0.25, privileged_frac=0.35) for s in range(n)]
    for view, p in (("prompted", 0.25), ("privileged", 0.35), ("raw", 0.40)):
        share = views.count(view) / n
        # 5 binomial standard deviations: a real bias fails, sampling noise does not
        assert abs(share - p) < 5 * np.sqrt(p * (1 - p) / n), (view, share)


def test_zero_fractions_give_only_raw_and_one_gives_only_that_view():
    assert {sft.view_of_step(s, seed=0, prompted_frac=0.0, privileged_frac=0.0) for s in range(200)} == {"raw"}
    assert {sft.view_of_step(s, seed=0, prompted_frac=1.0, privileged_frac=0.0) for s in range(200)} == {"prompted"}
    assert {sft.view_of_step(s, seed=0, prompted_frac=0.0, privileged_frac=1.0) for s in range(200)} == {"privileged"}


@pytest.mark.parametrize("p, q", [(-0.1, 0.0), (0.0, -0.5), (0.6, 0.5)])
def test_bad_fractions_are_named(p, q):
    with pytest.raises(ValueError, match="fractions"):
        sft.view_of_step(0, seed=0, prompted_frac=p, privileged_frac=q)


def test_view_kind_draws_every_candidate_deterministically():
    kinds = ("circle", "darken", "numbers", "attention")
    drawn = [sft.view_kind(s, seed=1, kinds=kinds) for s in range(200)]
    assert set(drawn) == set(kinds)
    assert drawn == [sft.view_kind(s, seed=1, kinds=kinds) for s in range(200)]
    assert {sft.view_kind(s, seed=1, kinds=("darken",)) for s in range(20)} == {"darken"}


def _meta():
    return {"id": "r1", "task": "temporal QA", "question": "When does the red ball move?",
            "answer": "[1.0, 3.0]", "image_size": [56, 56], "image_size_refine": [56, 56],
            "key_frames": [{"idx": 1, "time": 1.0}, {"idx": 3, "time": 3.0}],
            "key_items": {"1": {"red ball": [[0.1, 0.1, 0.5, 0.5]]}, "3": {"red ball": [[0.2, 0.2, 0.6, 0.6]]}}}


def test_privileged_ids_insert_the_judged_block_before_the_last_turn_end():
    tok = load_tokenizer()
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    prompt = np.asarray(tok("<|im_start|>user\nWhen?<|im_end|>\n<|im_start|>assistant\n",
                            add_special_tokens=False)["input_ids"], np.int32)
    batch = {"meta": [_meta()], "input_ids": prompt[None], "attention_mask": np.ones((1, len(prompt)), np.int32)}
    (ids,) = sft.privileged_ids(batch, [0], tokenizer=tok, marker=eos, max_claims=None)
    meta = _meta()
    block = tok("\n\n" + privileged_block(meta, AnnotationJudge()(meta, trace(meta))),
                add_special_tokens=False)["input_ids"]
    cut = int(np.flatnonzero(prompt == eos)[-1])
    np.testing.assert_array_equal(ids, np.concatenate([prompt[:cut], block, prompt[cut:]]))
    text = tok.decode(ids)
    assert "Verified answer" in text and text.index("Verified answer") < text.rindex("<|im_end|>")
