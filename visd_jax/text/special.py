"""The special token ids of the tokenizer in use, read from it (never assumed).

The tiny tokenizer puts Qwen's special tokens at 1000..1013; a real Qwen2/Qwen2.5 checkpoint
has them at 151643.. . Everything downstream of the tokenizer (the pipeline's vision pads
and padding, the sampler's stop and banned ids, the trainer's end-of-turn marker) takes
them from one `SpecialIds`, built once from the loaded tokenizer (and, for a checkpoint,
its generation_config.json stop ids).
"""
from __future__ import annotations

import dataclasses
import json
import pathlib

# Tokens a chat prompt needs, by name in `SpecialIds`; media tokens are the vision ones.
_NAMES = {
    "endoftext": "<|endoftext|>", "im_start": "<|im_start|>", "im_end": "<|im_end|>",
    "vision_start": "<|vision_start|>", "vision_end": "<|vision_end|>",
    "vision_pad": "<|vision_pad|>", "image_pad": "<|image_pad|>", "video_pad": "<|video_pad|>",
}


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    endoftext: int
    im_start: int
    im_end: int
    vision_start: int
    vision_end: int
    vision_pad: int
    image_pad: int
    video_pad: int
    pad: int  # what padding positions hold (attention_mask 0 there)
    stop: tuple[int, ...]  # generation ends at any of these (generation_config's eos ids)

    @property
    def media(self) -> tuple[int, ...]:
        """Ids that only the pipeline may place (in prompts); a completion never holds them."""
        return (self.vision_start, self.vision_end, self.vision_pad, self.image_pad, self.video_pad)


def special_ids(tokenizer, model_dir: str | pathlib.Path | None = None) -> SpecialIds:
    """The `SpecialIds` of a loaded tokenizer; `model_dir`'s generation_config.json (when
    present) gives the stop ids, else `<|im_end|>` and `<|endoftext|>`.

    A tokenizer lacking one of Qwen2-VL's tokens is an error naming the token: its prompts
    could not mark a video, and nothing would catch that before every record is skipped."""
    vocab = tokenizer.get_vocab()
    missing = [tok for tok in _NAMES.values() if tok not in vocab]
    if missing:
        where = f" of {model_dir}" if model_dir else ""
        raise ValueError(f"the tokenizer{where} lacks Qwen2-VL's special tokens {missing}: it is not a "
                         f"Qwen2-VL / Qwen2.5-VL tokenizer")
    ids = {name: int(vocab[tok]) for name, tok in _NAMES.items()}
    pad = tokenizer.pad_token_id
    pad = ids["endoftext"] if pad is None else int(pad)
    stop = (ids["im_end"], ids["endoftext"])
    if model_dir is not None:
        gen = pathlib.Path(model_dir) / "generation_config.json"
        if gen.is_file():
            eos = json.loads(gen.read_text()).get("eos_token_id")
            if eos is not None:
                # a chat turn ends with <|im_end|> whatever the base model's eos list says
                # (Qwen2-VL base checkpoints list only <|endoftext|>)
                stop = tuple(dict.fromkeys([*(int(i) for i in (eos if isinstance(eos, list) else [eos])),
                                            ids["im_end"]]))
    if pad in (ids["vision_start"], ids["vision_end"], ids["image_pad"], ids["video_pad"]):
        raise ValueError(f"the tokenizer's pad token id {pad} is a vision token")
    return SpecialIds(**ids, pad=pad, stop=stop)
