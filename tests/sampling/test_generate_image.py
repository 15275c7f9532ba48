"""generate() with image prompts (`Prompts.pixel_values`, `image_grid_thw`): greedy equals
transformers' greedy generate; sampled log-probs equal one forward pass over prompt+completion."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.models.hf_reference import build_hf_model, image_patches, make_mm_rows, token_types
from visd_jax.sampling import Prompts, generate
from tests.sampling.checks import assert_same_greedy_tokens, assert_sampled_logprobs_match, token_logprobs

EOS, PAD = 1002, 1000
# Row 0: text + image + text. Row 1: a video, then an image (prompts end with text).
ROWS = [[1001, 5, "I", 33, 44], [1001, "V", 9, "I", 21]]
IGRID = np.array([[1, 4, 6], [1, 6, 10]])
VGRID = np.array([[2, 4, 6]])
VSEC = np.array([1.3], np.float32)


def _prompts(image_pixels):
    ids, mask = make_mm_rows(ROWS, image_grid=IGRID, video_grid=VGRID)
    vpx = np.random.default_rng(8).standard_normal((int(VGRID.prod(1).sum()), 1176)).astype(np.float32)
    return Prompts(ids, mask, vpx, VGRID, VSEC, pixel_values=image_pixels, image_grid_thw=IGRID)


@pytest.fixture(scope="module")
def ours():
    """Our random tiny model and image prompts of random patches; no torch."""
    from visd_jax.models import Qwen25VL, Qwen25VLConfig

    ipx = np.random.default_rng(9).standard_normal((int(IGRID.prod(1).sum()), 1176)).astype(np.float32)
    return Qwen25VL.create(Qwen25VLConfig.preset("tiny"), seed=4), _prompts(ipx)


@pytest.mark.torch
@pytest.mark.slow
def test_greedy_with_images_matches_transformers_generate(tmp_path):
    import torch

    from visd_jax.models.hf_io import load_hf_checkpoint

    hf = build_hf_model(tmp_path, seed=6)
    ipx, igrid = image_patches([(56, 84), (84, 140)], seed=1)  # the image processor's layout
    np.testing.assert_array_equal(igrid, IGRID)
    p = _prompts(ipx)
    N = 10
    out = generate(load_hf_checkpoint(tmp_path), p, key=jax.random.key(0), max_new_tokens=N, temperature=0.0,
                   stop_ids=[EOS], pad_id=PAD)
    with torch.no_grad():
        ref = hf.generate(
            input_ids=torch.as_tensor(p.input_ids), attention_mask=torch.as_tensor(p.attention_mask),
            pixel_values=torch.as_tensor(ipx), image_grid_thw=torch.as_tensor(IGRID),
            pixel_values_videos=torch.as_tensor(p.pixel_values_videos), video_grid_thw=torch.as_tensor(VGRID),
            second_per_grid_ts=torch.as_tensor(VSEC), mm_token_type_ids=torch.as_tensor(token_types(p.input_ids)),
            max_new_tokens=N, do_sample=False, eos_token_id=EOS, pad_token_id=PAD,
        )[:, p.input_ids.shape[1]:].numpy()
    assert_same_greedy_tokens(out, ref, max_new_tokens=N, pad=PAD)


def _forward_logits(model, p, toks, msk):
    """Logits predicting each completion token, from one forward pass over prompt+completion
    with every prompt's image and video repeated G times in row order (one of each per row
    here: row b holds image b and, for b = 1, the one video)."""
    from flax import nnx

    G = toks.shape[0] // p.input_ids.shape[0]
    ids = np.concatenate([np.repeat(p.input_ids, G, 0), toks], 1)
    mask = np.concatenate([np.repeat(p.attention_mask, G, 0), msk], 1)
    cut = np.concatenate([[0], np.cumsum(IGRID.prod(1))])
    ipx = np.concatenate([p.pixel_values[cut[i]:cut[i + 1]] for i in range(len(IGRID)) for _ in range(G)])
    igrid = tuple(map(tuple, np.repeat(IGRID, G, 0).tolist()))
    vgrid = tuple(map(tuple, np.repeat(VGRID, G, 0).tolist()))
    vpx = np.concatenate([p.pixel_values_videos] * G)
    f = nnx.jit(lambda m, a, b, c, s, q: m(a, b, c, vgrid, s, pixel_values=q, image_grid_thw=igrid))
    logits = np.asarray(f(model, ids, mask, vpx, np.repeat(VSEC, G), ipx), np.float64)
    return logits[:, p.input_ids.shape[1] - 1: -1]


@pytest.mark.slow
def test_sampled_logprobs_with_images_equal_forward_pass(ours):
    model, p = ours
    G, N, temperature = 3, 6, 0.8
    out = generate(model, p, key=jax.random.key(2), num_samples=G, max_new_tokens=N, temperature=temperature,
                   top_p=1.0, stop_ids=[EOS], pad_id=PAD)
    toks, msk = np.asarray(out.tokens), np.asarray(out.mask)
    ref, m = assert_sampled_logprobs_match(out, _forward_logits(model, p, toks, msk), temperature)
    # The image is used: other pixels give other log-probs for the same tokens.
    other = _forward_logits(model, p._replace(pixel_values=-p.pixel_values), toks, msk)
    alt = token_logprobs(other, toks, temperature)
    assert np.abs(alt[m] - ref[m]).max() > 1e-3


def test_generate_rejects_bad_image_prompts(ours):
    model, p = ours
    kw = dict(key=jax.random.key(0), max_new_tokens=2, pad_id=PAD)
    with pytest.raises(ValueError, match="prompts.pixel_values and prompts.image_grid_thw must be given together"):
        generate(model, p._replace(image_grid_thw=None), **kw)
    with pytest.raises(ValueError, match="prompts.pixel_values and prompts.image_grid_thw must be given together"):
        generate(model, p._replace(pixel_values=None), **kw)
    with pytest.raises(ValueError, match=r"hold 21 image tokens \(id 1012\) but prompts.image_grid_thw "
                                         r"\[\(1, 4, 6\)\] gives 6"):
        generate(model, p._replace(image_grid_thw=IGRID[:1], pixel_values=p.pixel_values[:24]), **kw)
