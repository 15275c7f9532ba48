"""Text side of the model input: the tiny tokenizer, Qwen2-VL chat template, system prompts.

The tiny tokenizer's ids are fixed (see `tokenizer`): BPE 0..999, Qwen's special tokens
1000..1013, embedding table of `VOCAB_SIZE` = 1024. Code outside this package never uses
those constants: it reads the ids of the tokenizer in use through `special_ids`.
"""
from visd_jax.text.special import SpecialIds, special_ids
from visd_jax.text.system import TASKS, duration_text, frame_text, system_prompt
from visd_jax.text.template import CHAT_TEMPLATE
from visd_jax.text.tokenizer import (BASE_VOCAB, BOX_END_ID, BOX_START_ID, ENDOFTEXT_ID,
                                     EOS_ID, IM_END_ID, IM_START_ID, IMAGE_PAD_ID,
                                     OBJECT_REF_END_ID, OBJECT_REF_START_ID, PAD_ID,
                                     QUAD_END_ID, QUAD_START_ID, SPECIAL_IDS, SPECIAL_TOKENS,
                                     VIDEO_PAD_ID, VISION_END_ID, VISION_PAD_ID,
                                     VISION_START_ID, VOCAB_SIZE, build, has_tokenizer_files,
                                     load_tokenizer, tokenizer_dir)

__all__ = [
    "BASE_VOCAB", "BOX_END_ID", "BOX_START_ID", "CHAT_TEMPLATE", "ENDOFTEXT_ID", "EOS_ID",
    "IMAGE_PAD_ID", "IM_END_ID", "IM_START_ID", "OBJECT_REF_END_ID", "OBJECT_REF_START_ID",
    "PAD_ID", "QUAD_END_ID", "QUAD_START_ID", "SPECIAL_IDS", "SPECIAL_TOKENS", "SpecialIds", "TASKS",
    "VIDEO_PAD_ID", "VISION_END_ID", "VISION_PAD_ID", "VISION_START_ID", "VOCAB_SIZE", "build",
    "duration_text", "frame_text", "has_tokenizer_files", "load_tokenizer", "special_ids", "system_prompt", "tokenizer_dir",
]
