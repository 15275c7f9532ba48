"""THE list of visual-prompt kinds (VisionCoach, SPEC section 5), in one place.

`raw` is the example as it is (no visual prompt, no hint); the others are drawn on the key
frames with a hint appended to the question. A module of its own, free of JAX, so the config
check (run before JAX is imported) and the pipeline, the prompt ops and the selector all
read the same tuple.
"""
KINDS = ("raw", "circle", "darken", "numbers", "attention")
VISUAL_PROMPTS = KINDS[1:]  # what an oracle tries: every kind that changes the input
