"""Qwen2.5-VL shapes: read from a Hugging Face `config.json` or taken from a named preset.

The field names follow transformers' `Qwen2_5_VLConfig` (text_config / vision_config), so a
config round-trips through `from_hf` / `to_hf_dict` and transformers reads what we write.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """The vision tower (ViT with windowed attention and a 2x2 patch merger)."""

    depth: int = 32
    hidden_size: int = 1280
    intermediate_size: int = 3420
    num_heads: int = 16
    in_channels: int = 3
    patch_size: int = 14
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    window_size: int = 112
    out_hidden_size: int = 3584
    fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)
    tokens_per_second: int = 2
    rope_theta: float = 10000.0
    hidden_act: str = "silu"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        """Flattened input patch: channels x temporal patch x patch x patch (3x2x14x14)."""
        return self.in_channels * self.temporal_patch_size * self.patch_size**2

    @property
    def merger_window(self) -> int:
        """Window side in merged (2x2) units, as transformers' get_vision_window_index."""
        return self.window_size // self.spatial_merge_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """The Qwen2 decoder."""

    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    mrope_section: tuple[int, int, int] = (16, 24, 24)
    max_position_embeddings: int = 128000
    hidden_act: str = "silu"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclasses.dataclass(frozen=True)
class Qwen25VLConfig:
    """Full model config. Build with `from_hf(path)` or `preset(name)`."""

    text: TextConfig = TextConfig()
    vision: VisionConfig = VisionConfig()
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 151643
    eos_token_id: int | None = 151645
    pad_token_id: int | None = None

    def __post_init__(self):
        t, v = self.text, self.vision
        if t.hidden_size % t.num_attention_heads:
            raise ValueError(
                f"text hidden_size {t.hidden_size} is not divisible by num_attention_heads {t.num_attention_heads}"
            )
        if t.num_attention_heads % t.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {t.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {t.num_key_value_heads}"
            )
        if 2 * sum(t.mrope_section) != t.head_dim or len(t.mrope_section) != 3:
            raise ValueError(
                f"mrope_section {t.mrope_section} must have 3 parts summing to head_dim/2 = {t.head_dim // 2}"
            )
        if v.hidden_size % v.num_heads or v.head_dim % 4:
            raise ValueError(
                f"vision hidden_size {v.hidden_size} / num_heads {v.num_heads} must give a head_dim divisible by 4"
            )
        if v.out_hidden_size != t.hidden_size:
            raise ValueError(
                f"vision out_hidden_size {v.out_hidden_size} must equal text hidden_size {t.hidden_size}"
            )
        if v.merger_window < 1:
            raise ValueError(
                f"vision window_size {v.window_size} is smaller than one merged patch "
                f"({v.spatial_merge_size * v.patch_size} px)"
            )
        bad = [i for i in v.fullatt_block_indexes if not 0 <= i < v.depth]
        if bad:
            raise ValueError(f"fullatt_block_indexes {bad} are outside 0..{v.depth - 1}")
        for name in ("hidden_act",):
            if getattr(t, name) != "silu" or getattr(v, name) != "silu":
                raise ValueError(f"only hidden_act='silu' is supported, got text={t.hidden_act!r}, vision={v.hidden_act!r}")

    # ---------------------------------------------------------------- Hugging Face
    @classmethod
    def from_hf(cls, path: str | pathlib.Path | Mapping[str, Any]) -> "Qwen25VLConfig":
        """Reads a checkpoint directory's `config.json` (or the file, or its parsed dict)."""
        if isinstance(path, Mapping):
            raw, src = dict(path), "<dict>"
        else:
            p = pathlib.Path(path)
            p = p / "config.json" if p.is_dir() else p
            if not p.is_file():
                raise FileNotFoundError(f"Qwen25VLConfig.from_hf: no config.json at {p}")
            raw, src = json.loads(p.read_text()), str(p)
        if raw.get("model_type") not in ("qwen2_5_vl", None):
            raise ValueError(f"{src}: model_type {raw.get('model_type')!r} is not 'qwen2_5_vl'")
        # Older hub configs keep the text fields at top level; newer ones nest text_config.
        text_raw = dict(raw.get("text_config") or raw)
        vis_raw = dict(raw.get("vision_config") or {})
        if text_raw.get("use_sliding_window"):
            raise ValueError(f"{src}: use_sliding_window=True is not supported (Qwen2.5-VL releases disable it)")
        rope = dict(text_raw.get("rope_parameters") or text_raw.get("rope_scaling") or raw.get("rope_scaling") or {})
        theta = rope.get("rope_theta", text_raw.get("rope_theta", raw.get("rope_theta", 1_000_000.0)))
        rtype = rope.get("rope_type", rope.get("type", "default"))
        if rtype not in ("default", "mrope"):
            raise ValueError(f"{src}: rope_type {rtype!r} is not supported (only default/mrope)")
        t_fields = {f.name for f in dataclasses.fields(TextConfig)}
        text = TextConfig(
            **{k: text_raw[k] for k in t_fields & text_raw.keys() if k not in ("mrope_section", "rope_theta")},
            rope_theta=float(theta),
            mrope_section=tuple(rope.get("mrope_section", (16, 24, 24))),
        )
        if text_raw.get("num_key_value_heads") is None:
            text = dataclasses.replace(text, num_key_value_heads=text.num_attention_heads)
        v_fields = {f.name for f in dataclasses.fields(VisionConfig)}
        vrope = vis_raw.get("rope_parameters") or {}
        vis_kw = {k: vis_raw[k] for k in v_fields & vis_raw.keys() if k != "rope_theta"}
        if "fullatt_block_indexes" in vis_kw:
            vis_kw["fullatt_block_indexes"] = tuple(vis_kw["fullatt_block_indexes"])
        vision = VisionConfig(**vis_kw, rope_theta=float(vrope.get("rope_theta", 10000.0)))
        top = {}
        for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
            if k in raw:
                top[k] = raw[k]
        tie = raw.get("tie_word_embeddings", text_raw.get("tie_word_embeddings", False))
        for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
            val = text_raw.get(k, raw.get(k))
            if isinstance(val, list):
                val = val[0]
            top[k] = val
        return cls(text=text, vision=vision, tie_word_embeddings=bool(tie), **top)

    def to_hf_dict(self, *, dtype: str = "float32") -> dict[str, Any]:
        """config.json contents that transformers' `Qwen2_5_VLConfig` reads back."""
        t, v = self.text, self.vision
        text = {
            "model_type": "qwen2_5_vl_text",
            "vocab_size": t.vocab_size,
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "num_key_value_heads": t.num_key_value_heads,
            "rms_norm_eps": t.rms_norm_eps,
            "max_position_embeddings": t.max_position_embeddings,
            "hidden_act": t.hidden_act,
            "use_sliding_window": False,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": t.rope_theta,
                "mrope_section": list(t.mrope_section),
            },
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_token_id,
            "tie_word_embeddings": self.tie_word_embeddings,
        }
        vision = {
            "model_type": "qwen2_5_vl_vision",
            **{f.name: getattr(v, f.name) for f in dataclasses.fields(v) if f.name != "rope_theta"},
            "fullatt_block_indexes": list(v.fullatt_block_indexes),
            "rope_parameters": {"rope_type": "axial", "rope_theta": v.rope_theta},
        }
        return {
            "architectures": ["Qwen2_5_VLForConditionalGeneration"],
            "model_type": "qwen2_5_vl",
            "dtype": dtype,
            "text_config": text,
            "vision_config": vision,
            "image_token_id": self.image_token_id,
            "video_token_id": self.video_token_id,
            "vision_start_token_id": self.vision_start_token_id,
            "vision_end_token_id": self.vision_end_token_id,
            "tie_word_embeddings": self.tie_word_embeddings,
        }

    # ---------------------------------------------------------------- presets
    @classmethod
    def preset(cls, name: str) -> "Qwen25VLConfig":
        """'3b', '7b', '32b' (the released Qwen2.5-VL-*-Instruct shapes) or 'tiny' (tests)."""
        key = name.lower()
        if key not in _PRESETS:
            raise ValueError(f"unknown Qwen25VLConfig preset {name!r}; known: {sorted(_PRESETS)}")
        return _PRESETS[key]()


def _released(hidden, inter, layers, heads, kv, vocab, tie) -> Qwen25VLConfig:
    # The three releases share the vision tower and differ in the decoder and merger output.
    return Qwen25VLConfig(
        text=TextConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=inter,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
        ),
        vision=VisionConfig(out_hidden_size=hidden),
        tie_word_embeddings=tie,
    )


def _tiny() -> Qwen25VLConfig:
    # Ids fixed by the project's tiny tokenizer (visd_jax/text). window 56 px = 2 merged units,
    # so a 3x5-unit frame has windows that cross its right and bottom edges.
    return Qwen25VLConfig(
        text=TextConfig(
            vocab_size=1024,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_theta=10000.0,
            mrope_section=(2, 3, 3),
            max_position_embeddings=4096,
        ),
        vision=VisionConfig(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            window_size=56,
            out_hidden_size=64,
            fullatt_block_indexes=(1,),
        ),
        image_token_id=1012,
        video_token_id=1013,
        vision_start_token_id=1009,
        vision_end_token_id=1010,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=1002,
        pad_token_id=1000,
    )


def _small() -> Qwen25VLConfig:
    """The CPU demo model of the `local` experiment: tiny's vocabulary and vision tower,
    a 4-layer 256-wide decoder (3.0M parameters in all), big enough to learn the grounded
    output grammar in a few hundred CPU steps."""
    t = _tiny()
    return dataclasses.replace(t, text=dataclasses.replace(
        t.text, hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, mrope_section=(8, 12, 12)),
        vision=dataclasses.replace(t.vision, out_hidden_size=256))


_PRESETS = {
    "3b": lambda: _released(2048, 11008, 36, 16, 2, 151936, True),
    "7b": lambda: _released(3584, 18944, 28, 28, 4, 152064, False),
    "32b": lambda: _released(5120, 27648, 64, 40, 8, 152064, False),
    "tiny": _tiny,
    "small": _small,
}
