"""THE names LoRA adapters may target, free of JAX (the config check runs before JAX is
imported; `models/lora.py` attaches the adapters)."""
from __future__ import annotations

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
VISION = ("qkv", "proj", "fc1", "fc2")  # the vision tower's attention, MLP and merger
GROUPS = {"attention": ATTENTION, "mlp": MLP}


def parse_targets(text: str) -> tuple[str, ...]:
    """'attention,mlp' or projection names ('q_proj,v_proj') -> decoder projection names."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        names = GROUPS.get(part, (part,))
        unknown = [n for n in names if n not in ATTENTION + MLP]
        if unknown:
            raise ValueError(f"unknown LoRA target {part!r}: use 'attention', 'mlp' or one of {ATTENTION + MLP}")
        out += names
    if not out:
        raise ValueError("LoRA targets are empty")
    return tuple(dict.fromkeys(out))
