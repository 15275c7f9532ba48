"""The learned VP-Selector (VisionCoach paper section 3.3; SPEC section 5).

A pre-pass before RL: `dataset` rolls out proxy reasoners on every training example under
each of the five visual prompts and labels each example with the prompt that scored best;
`model` trains a small Qwen2.5-VL (with LoRA) to name that prompt from the raw video and the
question, and predicts a probability per prompt; the RL run reads the predictions from a
cache file (`coach.selector = "learned:DIR"` or `"cached:FILE"`, `training/selector.py`),
frozen. `python -m experiments.vp_selector` runs the three stages.
"""
