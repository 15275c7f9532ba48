"""The tiny tokenizer: fixed special ids, transformers loading, Qwen2-VL chat template."""
import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from visd_jax import text


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return text.tokenizer_dir(tmp_path_factory.mktemp("tok") / "t")


def test_special_tokens_have_the_agreed_ids(tok_dir):
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    assert isinstance(tok, PreTrainedTokenizerFast)
    expected = {"<|endoftext|>": 1000, "<|im_start|>": 1001, "<|im_end|>": 1002,
                "<|object_ref_start|>": 1003, "<|object_ref_end|>": 1004,
                "<|box_start|>": 1005, "<|box_end|>": 1006, "<|quad_start|>": 1007,
                "<|quad_end|>": 1008, "<|vision_start|>": 1009, "<|vision_end|>": 1010,
                "<|vision_pad|>": 1011, "<|image_pad|>": 1012, "<|video_pad|>": 1013}
    assert {t: tok.convert_tokens_to_ids(t) for t in expected} == expected
    assert (text.VIDEO_PAD_ID, text.IMAGE_PAD_ID, text.VISION_START_ID) == (1013, 1012, 1009)
    assert len(tok) == 1014 <= text.VOCAB_SIZE == 1024
    assert tok.eos_token_id == 1002 and tok.pad_token_id == 1000
    # Special tokens are atomic inside text; ordinary text never maps to ids >= 1000.
    ids = tok("a<|video_pad|>b", add_special_tokens=False)["input_ids"]
    assert ids.count(1013) == 1 and all(i < 1000 for i in ids if i != 1013)


@pytest.mark.parametrize("s", [
    "Where does the red ball move?", "<think><obj>blue cube</obj><box>[12,34,56,78]</box>"
    "at<t>1.5</t>s</think><answer>B</answer>", "From <t>0.5</t>s to <t>3.25</t>s\n"
    "Correct Option: C", "émoji ✓ 漢字 tabs\tand  spaces\n\n", "",
])
def test_byte_level_round_trip(tok_dir, s):
    tok = text.load_tokenizer(tok_dir)
    ids = tok(s, add_special_tokens=False)["input_ids"]
    assert all(0 <= i < 1000 for i in ids)
    assert tok.decode(ids) == s


def test_digits_are_single_tokens(tok_dir):
    tok = text.load_tokenizer(tok_dir)
    ids = tok("2026", add_special_tokens=False)["input_ids"]
    assert [tok.decode([i]) for i in ids] == ["2", "0", "2", "6"]


def test_chat_template_renders_qwen2_vl_layout(tok_dir):
    tok = text.load_tokenizer(tok_dir)
    msgs = [{"role": "user", "content": [
        {"type": "text", "text": "Frame 1 at 0.0s: "}, {"type": "video"},
        {"type": "image"}, {"type": "text", "text": "Q?"}]}]
    got = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    # Written out by hand from Qwen2-VL's published template: default system turn, pads.
    want = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nFrame 1 at 0.0s: <|vision_start|><|video_pad|><|vision_end|>"
            "<|vision_start|><|image_pad|><|vision_end|>Q?<|im_end|>\n<|im_start|>assistant\n")
    assert got == want
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo"}]
    got = tok.apply_chat_template(msgs, tokenize=False, add_vision_id=True)
    assert got == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                   "<|im_start|>assistant\nyo<|im_end|>\n")
    msgs = [{"role": "user", "content": [{"type": "video"}, {"type": "video"}]}]
    got = tok.apply_chat_template(msgs, tokenize=False, add_vision_id=True)
    assert "Video 1: <|vision_start|><|video_pad|><|vision_end|>Video 2: " in got


def test_build_is_deterministic(tok_dir, tmp_path):
    other = text.build(tmp_path / "again")
    assert (other / "tokenizer.json").read_bytes() == (tok_dir / "tokenizer.json").read_bytes()


def test_system_prompts_name_the_output_grammar():
    for task in text.TASKS:
        p = text.system_prompt(task)
        assert "<think>" in p and "<answer>" in p and "<obj>" in p and "<box>" in p
    assert "Correct Option:" in text.system_prompt("temporal QA (MCQ)")
    with pytest.raises(ValueError, match="unknown task"):
        text.system_prompt("video captioning")
