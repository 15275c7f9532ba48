"""`python -m visd_jax.export`: a LoRA run on a hub-layout checkpoint with the real Qwen2
tokenizer -> a Hugging Face directory -> transformers' greedy tokens equal our sampler's on
the policy restored by `load_policy`."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from tests.sampling.checks import assert_same_greedy_tokens
from tests.training.conftest import tiny_config
from visd_jax.training.trainer import Trainer

pytestmark = [pytest.mark.slow, pytest.mark.torch]


def test_export_of_a_lora_run_generates_like_our_sampler(tmp_path, qwen_checkpoint):
    import torch
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    from visd_jax.export import main
    from visd_jax.models.lora import has_lora
    from visd_jax.sampling.generate import Prompts, generate
    from visd_jax.training.policy import load_policy

    cfg = tiny_config(tmp_path, mode="sft", sft_steps=2, rl_steps=0, **{"model.lora.rank": 4, "sft.lr": 5e-2})
    cfg.model.update(preset="", path=str(qwen_checkpoint(False)))
    cfg.data.update(token_buckets=(512,), max_prompt_tokens=512)
    Trainer(cfg).run()
    out = tmp_path / "export"
    assert main(["--workdir", cfg.workdir, "--out", str(out)]) == 0
    meta = json.loads((out / "visd_jax_export.json").read_text())
    assert meta["step"] == 2 and (out / "tokenizer_config.json").exists() and (out / "generation_config.json").exists()

    policy = load_policy(workdir=cfg.workdir)
    assert policy.step == 2 and has_lora(policy.model)
    tok = AutoTokenizer.from_pretrained(out)
    texts = ["<|im_start|>user\nWhere is the red ball at 2 seconds?<|im_end|>\n<|im_start|>assistant\n",
             "<|im_start|>user\nCount the cubes.<|im_end|>\n<|im_start|>assistant\n"]
    enc = tok(texts, return_tensors="np", padding=True, padding_side="left")
    ids, mask = enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32)
    n, pad, stop = 10, tok.pad_token_id, policy.tokenizer.convert_tokens_to_ids("<|im_end|>")
    ours = generate(policy.model, Prompts(ids, mask), key=jax.random.key(0), max_new_tokens=n, temperature=0.0,
                    stop_ids=[stop], pad_id=pad)
    hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(out).eval()
    with torch.no_grad():
        ref = hf.generate(input_ids=torch.as_tensor(ids, dtype=torch.long),
                          attention_mask=torch.as_tensor(mask, dtype=torch.long), max_new_tokens=n,
                          do_sample=False, eos_token_id=stop, pad_token_id=pad)[:, ids.shape[1]:].numpy()
    assert_same_greedy_tokens(ours, ref, max_new_tokens=n, pad=pad)
    # the adapters were trained (else the merge would be vacuous) and the base was not
    from flax import nnx

    lora = nnx.state(policy.model, nnx.LoRAParam)
    assert any(float(np.abs(np.asarray(x)).max()) > 0 for p, x in nnx.to_flat_state(lora) if p[-1] == "lora_b")

    # model.init_from: a next run starts from this policy (adapters merged, fresh ones on top)
    from visd_jax.training.setup import build_model

    nxt = tiny_config(tmp_path / "next", mode="sft", **{"model.lora.rank": 2})
    nxt.model.update(preset="", path=cfg.model.path, init_from=cfg.workdir)
    started, _, _ = build_model(nxt, None)
    logits = lambda m: np.asarray(m.forward_packed(ids, mask, np.broadcast_to(np.cumsum(mask, 1) - 1, (3, *ids.shape)),  # noqa: E731
                                                   None, None))
    np.testing.assert_allclose(logits(started)[mask > 0], logits(policy.model)[mask > 0], rtol=0, atol=1e-4)
    nxt.model.update(preset="tiny", path="")
    with pytest.raises(ValueError, match="trained model preset=''"):
        build_model(nxt, None)


def test_export_errors_name_what_is_missing(tmp_path):
    from visd_jax.export import main

    assert main(["--workdir", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
