"""The project's tiny tokenizer: byte-level BPE with Qwen's special tokens at fixed ids.

Layout (agreed with the model; `VOCAB_SIZE` is the embedding size):
  0..999      byte-level BPE (256 byte symbols + 744 merges), trained deterministically
              on `corpus.corpus_text()`
  1000..1013  Qwen2-VL's special tokens, in `SPECIAL_TOKENS` order
  1014..1023  unused padding of the embedding table

Pre-tokenisation follows Qwen2 (its split regex, digits one by one, then byte-level), so
prompts segment the way Qwen's tokenizer segments them. The tokenizer is built on first
use into a directory and loaded with transformers like any saved tokenizer:
`AutoTokenizer.from_pretrained(path)` / `PreTrainedTokenizerFast.from_pretrained(path)`.
"""
from __future__ import annotations

import json
import os
import pathlib
import tempfile
import threading

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from visd_jax.text import corpus
from visd_jax.text.template import CHAT_TEMPLATE

BASE_VOCAB = 1000
VOCAB_SIZE = 1024
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
    "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
ENDOFTEXT_ID = 1000
IM_START_ID = 1001
IM_END_ID = 1002
OBJECT_REF_START_ID = 1003
OBJECT_REF_END_ID = 1004
BOX_START_ID = 1005
BOX_END_ID = 1006
QUAD_START_ID = 1007
QUAD_END_ID = 1008
VISION_START_ID = 1009
VISION_END_ID = 1010
VISION_PAD_ID = 1011
IMAGE_PAD_ID = 1012
VIDEO_PAD_ID = 1013
PAD_ID = ENDOFTEXT_ID  # Qwen pads with <|endoftext|>
EOS_ID = IM_END_ID  # a chat turn ends with <|im_end|>
SPECIAL_IDS: dict[str, int] = {t: BASE_VOCAB + i for i, t in enumerate(SPECIAL_TOKENS)}

# Qwen2's pre-tokenizer split: contractions, letter runs (with one leading non-letter),
# single digits, punctuation runs, newlines, spaces.
_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# Bump when the corpus, trainer settings or template change: cached builds are keyed on it.
BUILD_VERSION = 1


def _train() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BASE_VOCAB, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    tok.train_from_iterator(corpus.corpus_lines(), trainer=trainer)
    if tok.get_vocab_size() != BASE_VOCAB:
        raise RuntimeError(f"BPE training gave {tok.get_vocab_size()} tokens, expected "
                           f"{BASE_VOCAB}: the corpus has too few distinct merges")
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    for t, i in SPECIAL_IDS.items():
        if tok.token_to_id(t) != i:
            raise RuntimeError(f"special token {t} got id {tok.token_to_id(t)}, expected {i}")
    return tok


def build(out_dir: str | os.PathLike) -> pathlib.Path:
    """Trains the BPE and saves a transformers tokenizer (with chat template) to out_dir."""
    from transformers import PreTrainedTokenizerFast

    out = pathlib.Path(out_dir)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=_train(),
        eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None, bos_token=None,
        additional_special_tokens=[t for t in SPECIAL_TOKENS
                                   if t not in ("<|im_end|>", "<|endoftext|>")],
        model_max_length=32768, padding_side="right", clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out))
    (out / "visd_build.json").write_text(json.dumps({"version": BUILD_VERSION}))
    return out


def default_dir() -> pathlib.Path:
    base = os.environ.get("VISD_CACHE", os.path.join(tempfile.gettempdir(), "visd_jax_cache"))
    return pathlib.Path(base) / f"tokenizer-v{BUILD_VERSION}"


def has_tokenizer_files(directory: pathlib.Path) -> bool:
    """Whether `directory` holds a saved transformers tokenizer (a checkpoint's own)."""
    return (directory / "tokenizer_config.json").is_file() and (
        (directory / "tokenizer.json").is_file() or (directory / "vocab.json").is_file())


def tokenizer_dir(path: str | os.PathLike | None = None) -> pathlib.Path:
    """Directory of the tokenizer to load: a checkpoint's own (used as it is), or the tiny
    one (built there on first use when the directory is absent or empty; atomic, race-safe).

    A non-empty directory without tokenizer files is an error naming it: building the tiny
    tokenizer into a model checkpoint would hide that the checkpoint's own is missing."""
    out = pathlib.Path(path) if path is not None else default_dir()
    if (out / "visd_build.json").exists():
        return out
    if path is not None and out.is_dir() and any(out.iterdir()):
        if has_tokenizer_files(out):
            return out
        raise FileNotFoundError(
            f"{out} holds no tokenizer: it needs tokenizer_config.json and tokenizer.json (or "
            f"vocab.json + merges.txt); copy them from the checkpoint's release")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".tok-", dir=out.parent))
    build(tmp)
    try:
        os.rename(tmp, out)
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "visd_build.json").exists():
            raise
    return out


_CACHE: dict[str, object] = {}
# grain maps records on a thread pool; transformers' lazy imports are not thread-safe.
_LOCK = threading.Lock()


def load_tokenizer(path: str | os.PathLike | None = None):
    """The tokenizer at `path` (a checkpoint's own), or the tiny one; cached per directory,
    so every grain worker and the trainer load each once."""
    d = str(path) if path is not None else str(default_dir())
    tok = _CACHE.get(d)
    if tok is None:
        with _LOCK:
            if d not in _CACHE:
                from transformers import AutoTokenizer

                _CACHE[d] = AutoTokenizer.from_pretrained(str(tokenizer_dir(path)))
            tok = _CACHE[d]
    return tok
