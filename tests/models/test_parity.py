"""Parity with transformers' Qwen2_5_VLForConditionalGeneration (torch CPU, float32)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.models.hf_reference import GRID, SECONDS, VIDEO_ID, build_hf_model, hf_logits, make_batch

pytestmark = [pytest.mark.torch]

# float32 logits of O(5): reduction-order differences are ~1e-6; the bar is 1e-4.
TOL = 1e-4


@pytest.fixture(scope="module")
def hf_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf_tiny")
    model = build_hf_model(d)
    return d, model


def _forward(model, ids, mask, px, grid=GRID, seconds=SECONDS):
    from flax import nnx

    f = nnx.jit(lambda m, a, b, c, s: m(a, b, c, grid, s))
    return np.asarray(f(model, ids, mask, px, seconds))


@pytest.mark.slow
def test_logits_match_transformers_padded_text_video(hf_ckpt):
    from visd_jax.models.hf_io import load_hf_checkpoint

    d, hf = hf_ckpt
    ids, mask, px = make_batch(seed=1)
    ref = hf_logits(hf, ids, mask, px)
    ours = _forward(load_hf_checkpoint(d), ids, mask, px)
    valid = mask.astype(bool)  # padded query rows are undefined in both implementations
    assert ours.shape == ref.shape
    assert np.abs(ref[valid]).max() > 1.0  # weights large enough that positions matter
    np.testing.assert_allclose(ours[valid], ref[valid], rtol=0, atol=TOL)


@pytest.mark.slow
def test_rope_index_matches_transformers(hf_ckpt):
    """Right padding, two videos in one row and none in another, fractional seconds."""
    import torch

    from visd_jax.models import get_rope_index

    _, hf = hf_ckpt
    grid = np.array([[2, 4, 6], [3, 6, 4], [1, 2, 2]])
    sec = np.array([0.7, 2.0, 1.5], np.float32)
    n = [int(t * h * w // 4) for t, h, w in grid]
    rows = [
        [3, 4, VIDEO_ID - 4] + [VIDEO_ID] * n[0] + [5, 6] + [VIDEO_ID] * n[1] + [7],
        [8, 9, 10, 11],
        [12] + [VIDEO_ID] * n[2] + [13, 14],
    ]
    T = max(map(len, rows)) + 2
    ids = np.zeros((3, T), np.int64)
    mask = np.zeros((3, T), np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    ref_pos, ref_delta = hf.model.get_rope_index(
        torch.as_tensor(ids), mm_token_type_ids=torch.as_tensor((ids == VIDEO_ID) * 2),
        video_grid_thw=torch.as_tensor(grid), second_per_grid_ts=torch.as_tensor(sec),
        attention_mask=torch.as_tensor(mask),
    )
    pos, delta = get_rope_index(ids, mask, grid, sec, video_token_id=VIDEO_ID, spatial_merge_size=2,
                                tokens_per_second=2)
    np.testing.assert_array_equal(np.asarray(pos), ref_pos.numpy())
    np.testing.assert_array_equal(np.asarray(delta), ref_delta.numpy()[:, 0])


@pytest.mark.slow
def test_save_roundtrip_is_exact_in_transformers(hf_ckpt, tmp_path):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from visd_jax.models.hf_io import load_hf_checkpoint, save_hf_checkpoint

    d, hf = hf_ckpt
    save_hf_checkpoint(load_hf_checkpoint(d), tmp_path / "out", max_shard_bytes=400_000)
    assert (tmp_path / "out" / "model.safetensors.index.json").is_file()  # sharded write
    back = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    ref_sd, back_sd = hf.state_dict(), back.state_dict()
    assert set(ref_sd) == set(back_sd)
    for k, v in ref_sd.items():
        assert torch.equal(v, back_sd[k]), k
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert back.config.vision_config.fullatt_block_indexes == [1] and cfg["video_token_id"] == VIDEO_ID


def _rewrite(src, dst, edit):
    """Copies checkpoint `src` to `dst` with `edit(dict of numpy tensors)` applied."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(src / "model.safetensors"))
    edit(tensors)
    dst.mkdir()
    save_file(tensors, str(dst / "model.safetensors"))
    (dst / "config.json").write_text((src / "config.json").read_text())
    return dst


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.pop("model.layers.1.self_attn.k_proj.bias"), "missing tensors: ['model.layers.1.self_attn.k_proj.bias']"),
        (lambda t: t.__setitem__("visual.blocks.9.norm1.weight", np.ones(32, np.float32)), "unexpected tensors not used by Qwen25VL: ['visual.blocks.9.norm1.weight']"),
        (lambda t: t.__setitem__("model.norm.weight", np.ones(63, np.float32)), "tensor 'model.norm.weight' has shape (63,), expected (64,)"),
    ],
)
def test_bad_checkpoint_is_a_clear_error(hf_ckpt, tmp_path, edit, message):
    from visd_jax.models.hf_io import CheckpointError, load_hf_checkpoint

    d, _ = hf_ckpt
    bad = _rewrite(d, tmp_path / "bad", edit)
    with pytest.raises(CheckpointError) as err:
        load_hf_checkpoint(bad)
    assert message in str(err.value)


def test_new_style_prefixes_load(hf_ckpt, tmp_path):
    """transformers >= 5 in-memory names (model.language_model., model.visual.) are accepted."""
    from visd_jax.models.hf_io import load_hf_checkpoint

    d, _ = hf_ckpt

    def rename(t):
        for k in list(t):
            if k.startswith("model."):
                t["model.language_model." + k[6:]] = t.pop(k)
            elif k.startswith("visual."):
                t["model." + k] = t.pop(k)

    a = load_hf_checkpoint(d)
    b = load_hf_checkpoint(_rewrite(d, tmp_path / "new", rename))
    np.testing.assert_array_equal(np.asarray(a.model.layers[1].mlp.up_proj.kernel[...]),
                                  np.asarray(b.model.layers[1].mlp.up_proj.kernel[...]))
    np.testing.assert_array_equal(np.asarray(a.visual.patch_embed[...]), np.asarray(b.visual.patch_embed[...]))


@pytest.mark.slow
def test_load_onto_mesh_places_each_slice_and_keeps_the_logits(hf_ckpt, mesh8):
    """load_hf_checkpoint(mesh=) puts every tensor straight onto its RULES sharding (each
    device holding only its slice of the file's tensor) and the sharded model computes the
    transformers logits."""
    import jax
    from jax.sharding import PartitionSpec as P
    from safetensors.numpy import load_file

    from visd_jax.models.hf_io import load_hf_checkpoint

    d, hf = hf_ckpt
    model = load_hf_checkpoint(d, mesh=mesh8)
    tensors = {}
    for f in sorted(d.glob("*.safetensors")):
        tensors.update(load_file(f))
    q = model.model.layers[0].self_attn.q_proj.kernel[...]
    assert q.sharding.spec == P("fsdp", "tensor")
    hf_q = tensors["model.layers.0.self_attn.q_proj.weight"].T  # torch Linear is [out, in]
    assert len({s.device for s in q.addressable_shards}) == 8
    for s in q.addressable_shards:
        assert s.data.shape == (hf_q.shape[0] // 2, hf_q.shape[1] // 2)
        np.testing.assert_array_equal(np.asarray(s.data), hf_q[s.index])
    ids, mask, px = make_batch(seed=2)
    with jax.set_mesh(mesh8):
        ours = _forward(model, ids, mask, px)
    ref = hf_logits(hf, ids, mask, px)
    valid = mask.astype(bool)
    np.testing.assert_allclose(ours[valid], ref[valid], rtol=0, atol=TOL)
