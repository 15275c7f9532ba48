"""Qwen2-VL's chat template (jinja), reproduced for the tiny tokenizer.

Rendering matches Qwen2-VL's tokenizer_config template: a default system turn when the
first message is not a system message; turns as `<|im_start|>ROLE\\nCONTENT<|im_end|>\\n`;
list contents render images as `<|vision_start|><|image_pad|><|vision_end|>` and videos as
`<|vision_start|><|video_pad|><|vision_end|>` (optionally prefixed `Picture k: ` /
`Video k: ` with add_vision_id); `add_generation_prompt` opens the assistant turn.
The processor (here: visd_jax.pipeline) then expands each pad token to the frame's
merged-patch count.
"""

CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}"
    "{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
