"""Qwen2.5-VL in flax.nnx with Hugging Face safetensors in and out.

config.py  shapes (from_hf, presets)      rope.py     2-D and multimodal rotary, get_rope_index
layers.py  Dense/RMSNorm/SwiGLU/attention vision.py   vision tower (windows, merger)
decoder.py Qwen2 decoder + KV cache        model.py    Qwen25VL, sharded creation
hf_io.py   load_hf_checkpoint / save_hf_checkpoint (lazy, per-shard, no pickle)
"""
from visd_jax.models.config import Qwen25VLConfig, TextConfig, VisionConfig
from visd_jax.models.decoder import KVCache
from visd_jax.models.model import Qwen25VL, param_shardings
from visd_jax.models.rope import get_rope_index

__all__ = [
    "Qwen25VLConfig",
    "TextConfig",
    "VisionConfig",
    "Qwen25VL",
    "KVCache",
    "param_shardings",
    "get_rope_index",
]
