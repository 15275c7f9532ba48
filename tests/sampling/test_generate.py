"""generate(): greedy equals transformers' greedy generate; sampled log-probs equal a forward pass."""
from __future__ import annotations

import sys
import pathlib

import jax
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "models"))
from hf_reference import GRID, SECONDS, VIDEO_ID, build_hf_model, make_batch  # noqa: E402

from visd_jax.sampling import Prompts, generate  # noqa: E402
from tests.sampling.checks import (assert_same_greedy_tokens, assert_sampled_logprobs_match,  # noqa: E402
                                   log_softmax, token_logprobs)

EOS, PAD = 1002, 1000


def _prompts():
    ids, mask, px = make_batch(seed=2)
    ids, mask = ids[:, :-1], mask[:, :-1]  # drop row 0's eos so the prompt ends with text
    return Prompts(ids, mask, px, GRID, SECONDS)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """transformers' random tiny model and the same weights loaded into ours (needs torch)."""
    from visd_jax.models.hf_io import load_hf_checkpoint

    d = tmp_path_factory.mktemp("hf_gen")
    hf = build_hf_model(d, seed=4)
    return hf, load_hf_checkpoint(d), _prompts()


@pytest.fixture(scope="module")
def ours():
    """Our random tiny model (same token ids as hf_reference) and the prompts; no torch."""
    from visd_jax.models import Qwen25VL, Qwen25VLConfig

    return Qwen25VL.create(Qwen25VLConfig.preset("tiny"), seed=4), _prompts()


@pytest.mark.torch
@pytest.mark.slow
def test_greedy_matches_transformers_generate(tiny):
    import torch

    hf, model, p = tiny
    N = 12
    out = generate(model, p, key=jax.random.key(0), max_new_tokens=N, temperature=0.0, stop_ids=[EOS], pad_id=PAD)
    with torch.no_grad():
        ref = hf.generate(
            input_ids=torch.as_tensor(p.input_ids), attention_mask=torch.as_tensor(p.attention_mask),
            pixel_values_videos=torch.as_tensor(p.pixel_values_videos),
            video_grid_thw=torch.as_tensor(GRID), second_per_grid_ts=torch.as_tensor(SECONDS),
            mm_token_type_ids=torch.as_tensor((p.input_ids == VIDEO_ID) * 2),
            max_new_tokens=N, do_sample=False, eos_token_id=EOS, pad_token_id=PAD,
        )[:, p.input_ids.shape[1]:].numpy()
    assert_same_greedy_tokens(out, ref, max_new_tokens=N, pad=PAD)


def _forward_logprobs(model, p, toks, msk):
    """log p(token) from one full forward pass over prompt + completion."""
    from flax import nnx

    G = toks.shape[0] // p.input_ids.shape[0]
    ids = np.concatenate([np.repeat(p.input_ids, G, 0), toks], 1)
    mask = np.concatenate([np.repeat(p.attention_mask, G, 0), msk], 1)
    grid = np.repeat(GRID, G, 0)
    # Row b*G+g holds prompt b's video: each clip repeated G times, in row order.
    px = np.concatenate([p.pixel_values_videos[a:b] for a, b in _video_slices() for _ in range(G)])
    f = nnx.jit(lambda m, a, b, c, s: m(a, b, c, grid, s))
    logits = np.asarray(f(model, ids, mask, px, np.repeat(SECONDS, G)), np.float64)
    T = p.input_ids.shape[1]
    return logits[:, T - 1: -1]


def _video_slices():
    n = np.concatenate([[0], np.cumsum(GRID.prod(1))])
    return [(int(n[i]), int(n[i + 1])) for i in range(len(GRID))]


@pytest.mark.slow
@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.7, None)])
def test_sampled_logprobs_equal_forward_pass(ours, temperature, top_k):
    model, p = ours
    G, N = 3, 8
    out = generate(model, p, key=jax.random.key(1), num_samples=G, max_new_tokens=N,
                   temperature=temperature, top_p=1.0, top_k=top_k, stop_ids=[EOS], pad_id=PAD)
    toks, msk = np.asarray(out.tokens), np.asarray(out.mask)
    assert_sampled_logprobs_match(out, _forward_logprobs(model, p, toks, msk), temperature)
    again = generate(model, p, key=jax.random.key(1), num_samples=G, max_new_tokens=N,
                     temperature=temperature, top_p=1.0, top_k=top_k, stop_ids=[EOS], pad_id=PAD)
    np.testing.assert_array_equal(np.asarray(again.tokens), toks)  # deterministic for a key


def test_generate_rejects_bad_settings(ours):
    model, p = ours
    kw = dict(key=jax.random.key(0), max_new_tokens=2, pad_id=PAD)
    with pytest.raises(ValueError, match="top_k=5000 exceeds"):
        generate(model, p, top_k=5000, **kw)
    with pytest.raises(ValueError, match="video_grid_thw must be given together"):
        generate(model, p._replace(video_grid_thw=None), **kw)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, p, **{**kw, "max_new_tokens": 0})
    with pytest.raises(ValueError, match="top_p"):
        generate(model, p, top_p=0.0, **kw)


def test_generate_rejects_right_padding(ours):
    model, p = ours
    ids = np.asarray(p.input_ids)[:, ::-1]
    with pytest.raises(ValueError, match="left-padded"):
        generate(model, Prompts(ids, np.asarray(p.attention_mask)[:, ::-1]), key=jax.random.key(0),
                 max_new_tokens=2)


@pytest.mark.slow
def test_all_rows_stopping_at_once_ends_the_loop_with_pad_after(ours):
    # Every id is a stop id: each row stops at its first token, the loop exits after the
    # prefill, and the N-1 slots it never ran keep pad / log-prob 0 / mask 0.
    model, p = ours
    G, N, V = 2, 6, model.config.text.vocab_size
    out = generate(model, p, key=jax.random.key(5), num_samples=G, max_new_tokens=N, temperature=0.0,
                   stop_ids=np.arange(V), pad_id=PAD)
    toks, lps, msk = map(np.asarray, out)
    logits = _forward_logprobs(model, p, toks[:, :1], msk[:, :1])[:, 0]  # logits at the prompt end
    np.testing.assert_array_equal(toks[:, 0], logits.argmax(-1))
    np.testing.assert_allclose(lps[:, 0], log_softmax(logits)[np.arange(len(toks)), toks[:, 0]], atol=1e-4)
    np.testing.assert_array_equal(msk, np.eye(1, N, dtype=msk.dtype).repeat(len(toks), 0))
    assert (toks[:, 1:] == PAD).all() and (lps[:, 1:] == 0).all()


@pytest.mark.slow
def test_rows_stop_independently_and_log_probs_match_forward_pass(ours):
    # A third of the ids stop: rows end at different steps, some before max_new_tokens.
    model, p = ours
    G, N = 3, 7
    stops = np.arange(0, model.config.text.vocab_size, 3)
    out = generate(model, p, key=jax.random.key(7), num_samples=G, max_new_tokens=N, temperature=1.0,
                   top_p=1.0, stop_ids=stops, pad_id=PAD)
    toks, lps, msk = map(np.asarray, out)
    m = msk.astype(bool)
    lengths = m.sum(1)
    assert len(set(lengths.tolist())) > 1 and lengths.min() >= 1
    for row, n in zip(toks, lengths):
        assert np.isin(row[:n - 1], stops).sum() == 0  # no stop before the last kept token
        assert n == N or row[n - 1] in stops
        assert (row[n:] == PAD).all()
    ref = token_logprobs(_forward_logprobs(model, p, toks, msk), toks)
    np.testing.assert_allclose(lps[m], ref[m], atol=1e-4)
    assert (lps[~m] == 0).all()


def test_a_rematerialised_float32_master_model_samples_as_the_plain_one(ours):
    """The v5e variants' model (remat, float32 master weights, bf16 compute) samples: remat
    is off under a KV cache (nnx.remat inside the decode loop did not trace), and the master
    weights are cast once, so its greedy tokens are those of a plain bf16 copy."""
    from flax import nnx
    import jax.numpy as jnp

    from visd_jax.models import Qwen25VL, Qwen25VLConfig

    _, p = ours
    master = Qwen25VL.create(Qwen25VLConfig.preset("tiny"), seed=4, remat=True, param_dtype=jnp.float32,
                             dtype=jnp.bfloat16)
    plain = Qwen25VL.create(Qwen25VLConfig.preset("tiny"), seed=0, param_dtype=jnp.bfloat16)
    nnx.update(plain, jax.tree.map(lambda x: x.astype(jnp.bfloat16), nnx.state(master)))
    kw = dict(key=jax.random.key(0), max_new_tokens=6, temperature=0.0, stop_ids=[EOS], pad_id=PAD)
    np.testing.assert_array_equal(np.asarray(generate(master, p, **kw).tokens),
                                  np.asarray(generate(plain, p, **kw).tokens))
