"""VisionCoach visual prompts as array ops, and the question hints that go with them."""
from visd_jax.prompts.font import FONT, digit_scale, frame_numbers
from visd_jax.prompts.hints import HINTS, KINDS, hint
from visd_jax.prompts.ops import (
    apply,
    attention,
    box_union_mask,
    darken,
    default_thickness,
    ellipse_ring_mask,
    red_circle,
    saliency_from_boxes,
    smooth_normalise,
)

__all__ = [
    "FONT",
    "HINTS",
    "KINDS",
    "apply",
    "attention",
    "box_union_mask",
    "darken",
    "default_thickness",
    "digit_scale",
    "ellipse_ring_mask",
    "frame_numbers",
    "hint",
    "red_circle",
    "saliency_from_boxes",
    "smooth_normalise",
]
