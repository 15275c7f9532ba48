"""visd_jax.losses: pure, jittable, keyword-only loss functions (SPEC sections 3, 4, 6).

Data flow: model hidden states -> `token_logprobs` (chunked, no [B, T, V] logits) ->
`group_advantages` of rewards -> optional VISD `token_signal` ->
`direction_magnitude_advantages` -> `gspo_loss` / `visd_objective`.

Every loss also has a `*_terms` form returning sums and denominators; `merge_terms`
combines micro-batches exactly (see `visd_jax.losses.terms`).
"""
from visd_jax.losses.advantages import (
    direction_magnitude_advantages,
    direction_magnitude_terms,
    group_advantages,
)
from visd_jax.losses.distill import (
    magnitude_scaled_kl,
    magnitude_scaled_kl_from_terms,
    magnitude_scaled_kl_terms,
    prompted_rollout_nll,
    prompted_rollout_nll_from_terms,
    prompted_rollout_nll_terms,
    reference_kl,
    reference_kl_from_terms,
    reference_kl_terms,
)
from visd_jax.losses.gspo import gspo_from_terms, gspo_loss, gspo_terms
from visd_jax.losses.logprobs import (
    DEFAULT_CHUNK_SIZE,
    token_logprobs,
    token_logprobs_from_logits,
)
from visd_jax.losses.objective import (
    objective_denominators,
    visd_objective,
    visd_objective_from_terms,
    visd_objective_terms,
)
from visd_jax.losses.signal import token_signal, token_signal_from_logits
from visd_jax.losses.terms import merge_terms

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "direction_magnitude_advantages",
    "direction_magnitude_terms",
    "group_advantages",
    "gspo_from_terms",
    "gspo_loss",
    "gspo_terms",
    "magnitude_scaled_kl",
    "magnitude_scaled_kl_from_terms",
    "magnitude_scaled_kl_terms",
    "merge_terms",
    "objective_denominators",
    "prompted_rollout_nll",
    "prompted_rollout_nll_from_terms",
    "prompted_rollout_nll_terms",
    "reference_kl",
    "reference_kl_from_terms",
    "reference_kl_terms",
    "token_logprobs",
    "token_logprobs_from_logits",
    "token_signal",
    "token_signal_from_logits",
    "visd_objective",
    "visd_objective_from_terms",
    "visd_objective_terms",
]
