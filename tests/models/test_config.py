"""Qwen25VLConfig: Hugging Face config.json in and out, presets with the released shapes."""
from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from flax import nnx

from tests.models.hf_reference import HF_TINY
from visd_jax.models import Qwen25VL, Qwen25VLConfig


def _num_params(cfg):
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(lambda: Qwen25VL(cfg, rngs=nnx.Rngs(0)))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def test_from_hf_reads_transformers_config(tmp_path):
    from transformers import Qwen2_5_VLConfig

    Qwen2_5_VLConfig(**HF_TINY).save_pretrained(tmp_path)
    cfg = Qwen25VLConfig.from_hf(tmp_path)
    assert cfg.text.num_key_value_heads == 2 and cfg.text.mrope_section == (2, 3, 3)
    assert cfg.text.rope_theta == 10000.0 and cfg.text.head_dim == 16
    assert cfg.vision.depth == 3 and cfg.vision.fullatt_block_indexes == (1,)
    assert cfg.vision.merger_window == 2 and cfg.vision.patch_dim == 3 * 2 * 14 * 14
    assert cfg.video_token_id == 1013 and not cfg.tie_word_embeddings


def test_to_hf_dict_round_trips_through_transformers(tmp_path):
    from transformers import Qwen2_5_VLConfig

    cfg = Qwen25VLConfig.preset("tiny")
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_hf_dict()))
    hf = Qwen2_5_VLConfig.from_pretrained(tmp_path)
    assert hf.text_config.hidden_size == 64 and hf.vision_config.window_size == 56
    assert hf.text_config.rope_parameters["mrope_section"] == [2, 3, 3]
    hf.save_pretrained(tmp_path / "again")
    assert Qwen25VLConfig.from_hf(tmp_path / "again") == cfg


def test_tiny_preset_uses_the_project_tokenizer_ids():
    cfg = Qwen25VLConfig.preset("tiny")
    assert (cfg.text.vocab_size, cfg.pad_token_id, cfg.eos_token_id) == (1024, 1000, 1002)
    assert (cfg.vision_start_token_id, cfg.vision_end_token_id) == (1009, 1010)
    assert (cfg.image_token_id, cfg.video_token_id) == (1012, 1013)


@pytest.mark.parametrize(
    "name, published, rel",
    [
        ("7b", 8_292_166_656, 0.0),
        pytest.param("3b", 3.75e9, 0.005, marks=pytest.mark.slow),
        pytest.param("32b", 33.5e9, 0.005, marks=pytest.mark.slow),
    ],
)
def test_presets_have_the_released_parameter_counts(name, published, rel):
    # Counts from the Hugging Face model cards of Qwen/Qwen2.5-VL-{3B,7B,32B}-Instruct.
    n = _num_params(Qwen25VLConfig.preset(name))
    assert abs(n - published) <= rel * published, n


def test_bad_configs_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown Qwen25VLConfig preset 'huge'"):
        Qwen25VLConfig.preset("huge")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        Qwen25VLConfig.from_hf(tmp_path)
    with pytest.raises(ValueError, match="model_type 'llama'"):
        Qwen25VLConfig.from_hf({"model_type": "llama"})
    raw = Qwen25VLConfig.preset("tiny").to_hf_dict()
    raw["text_config"]["rope_parameters"]["mrope_section"] = [2, 3, 4]
    with pytest.raises(ValueError, match="mrope_section"):
        Qwen25VLConfig.from_hf(raw)
    raw = Qwen25VLConfig.preset("tiny").to_hf_dict()
    raw["text_config"]["use_sliding_window"] = True
    with pytest.raises(ValueError, match="use_sliding_window"):
        Qwen25VLConfig.from_hf(raw)
