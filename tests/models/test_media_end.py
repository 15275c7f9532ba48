"""A vision token the policy writes into a completion is text, never media.

Media embeddings are placed by token id in token order over the flattened batch; before
`media_end`, one stray `<|video_pad|>` in row 0's completion shifted every later video
embedding (row 1's logits moved) inside jit, where the eager count check cannot fire.
"""
from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from tests.models.hf_reference import GRID, SECONDS, VIDEO_ID, make_batch
from visd_jax.sampling import Prompts, generate


@pytest.fixture(scope="module")
def model():
    from visd_jax.models import Qwen25VL, Qwen25VLConfig

    return Qwen25VL.create(Qwen25VLConfig.preset("tiny"), seed=3)


def _with_completion(completion_0):
    ids, mask, px = make_batch(seed=1)
    comp = np.array([completion_0, [40, 42, 41]], ids.dtype)
    return (np.concatenate([ids, comp], 1), np.concatenate([mask, np.ones_like(comp)], 1), px,
            ids.shape[1])


def _logits(model, ids, mask, px, media_end):
    f = nnx.jit(lambda m, a, b, c, s: m(a, b, c, GRID, s, media_end=media_end))
    return np.asarray(f(model, ids, mask, px, SECONDS))


def test_stray_video_token_in_a_completion_changes_only_its_own_row_from_there_on(model):
    clean_ids, mask, px, prompt = _with_completion([40, 42, 41])
    stray_ids, _, _, _ = _with_completion([40, VIDEO_ID, 41])
    clean = _logits(model, clean_ids, mask, px, prompt)
    stray = _logits(model, stray_ids, mask, px, prompt)
    np.testing.assert_array_equal(stray[1], clean[1])  # the other row: bit for bit
    at = prompt + 1  # the stray token's position in row 0
    np.testing.assert_array_equal(stray[0, :at], clean[0, :at])
    assert not np.allclose(stray[0, at:], clean[0, at:])  # it is read, as the token it is
    # without media_end the same call moves the other row: what the guard is for
    moved = _logits(model, stray_ids, mask, px, None)
    assert np.abs(moved[1] - clean[1]).max() > 1e-3


def test_media_end_before_the_media_is_a_count_error_eagerly(model):
    ids, mask, px, prompt = _with_completion([40, 42, 41])
    with pytest.raises(ValueError, match="video tokens"):
        model(ids, mask, px, GRID, SECONDS, media_end=3)


def test_banned_ids_are_never_sampled(model):
    ids, mask, px = make_batch(seed=2)
    p = Prompts(ids[:, :-1], mask[:, :-1], px, GRID, SECONDS)
    vocab = model.config.text.vocab_size
    allowed = {7, 8, 9}
    out = generate(model, p, key=jax.random.key(0), num_samples=3, max_new_tokens=6, temperature=1.0,
                   top_p=1.0, pad_id=1000, banned_ids=[i for i in range(vocab) if i not in allowed])
    toks, msk = np.asarray(out.tokens), np.asarray(out.mask).astype(bool)
    assert set(toks[msk].tolist()) <= allowed and msk.all()
    assert np.isfinite(np.asarray(out.logprobs)[msk]).all()


def test_a_grid_per_video_over_split_blocks_is_an_error(model):
    """Two (1, 6, 10) rows for row 0's one (2, 6, 10) block: the token count agrees, the block
    count does not; M-RoPE would silently reuse grids."""
    ids, mask, px = make_batch(seed=1)
    with pytest.raises(ValueError, match="2 video blocks but video_grid_thw has 3 rows"):
        model(ids, mask, px, np.array([[1, 6, 10], [1, 6, 10], [3, 4, 6]]), np.array([1.3, 1.3, 0.75], np.float32))
