"""Rollout sampling: jitted prefill + decode with a static KV cache (see generate.py)."""
from visd_jax.sampling.filters import filter_logits
from visd_jax.sampling.generate import Prompts, Samples, generate

__all__ = ["Prompts", "Samples", "filter_logits", "generate"]
