"""Assertions shared by the sampler tests (and the scanned-model tests)."""
from __future__ import annotations

import importlib
import re

import jax
import numpy as np
from flax import nnx


def assert_decode_cache_in_place(model, *, batch: int = 2, prompt: int = 10, new: int = 7, samples: int = 3):
    """The compiled sampler may produce a cache-shaped array only by dynamic-update-slice
    (in place on the loop / scan carry), never by a copy or a concatenation: a per-step
    rebuild of the cache would cost O(cache) memory traffic per token."""
    gen = importlib.import_module("visd_jax.sampling.generate")
    graphdef, state = nnx.split(model)
    ids = np.ones((batch, prompt), np.int32)
    fn = gen._compiled(graphdef, None, samples, new, 1.0, 0.95, None, (5,), 0)
    hlo = fn.lower(state, ids, np.ones_like(ids), None, None, jax.random.key(0)).compile().as_text()
    t = model.config.text
    shape = f"f32[{t.num_hidden_layers},{batch * samples},{prompt + new - 1},{t.num_key_value_heads},{t.head_dim}]"
    ops = re.findall(re.escape(shape) + r"\{[^}]*\} ([\w-]+)\(", hlo)
    assert "dynamic-update-slice" in ops, f"no in-place cache update found for {shape}"
    assert not {"copy", "concatenate"} & set(ops), ops


def assert_same_greedy_tokens(out, ref_new_tokens: np.ndarray, *, max_new_tokens: int, pad: int):
    """Our greedy Samples vs transformers' generated tokens (which stop early when every row
    has ended): equal up to each row's stop, and the prompts really led to different rows."""
    toks, msk = np.asarray(out.tokens), np.asarray(out.mask).astype(bool)
    ref = np.pad(ref_new_tokens, ((0, 0), (0, max_new_tokens - ref_new_tokens.shape[1])), constant_values=pad)
    np.testing.assert_array_equal(np.where(msk, toks, pad), ref)
    assert len(set(map(tuple, toks))) > 1  # the two prompts differ


def log_softmax(x):
    """log-softmax over the last axis (NumPy, in the input's precision; float64 references)."""
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def token_logprobs(logits, toks, temperature: float = 1.0):
    """log p(tok) under softmax(logits / temperature), per position: the sampler's log-probs."""
    return np.take_along_axis(log_softmax(logits / temperature), toks[..., None], -1)[..., 0]


def assert_sampled_logprobs_match(out, logits, temperature: float):
    """The sampler's log-probs equal the forward pass's at the sampled tokens, and the samples
    differ from each other. Returns (reference log-probs, bool mask) for further checks."""
    toks, lps, msk = map(np.asarray, out)
    ref, m = token_logprobs(logits, toks, temperature), msk.astype(bool)
    np.testing.assert_allclose(lps[m], ref[m], atol=1e-4)
    assert len({tuple(r) for r in toks}) > 1  # samples differ
    return ref, m
