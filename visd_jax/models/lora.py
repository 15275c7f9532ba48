"""LoRA adapters on the model's projections (Hu et al., 2022), as `nnx.LoRA` modules.

    y = x W (+ b) + (alpha / r) x A B,   A [in, r] he-uniform,  B [r, out] zeros

`add_lora` attaches an `nnx.LoRA` to each targeted `Dense` (its `lora` attribute; the
kernel keeps its path, so Hugging Face checkpoints load and save by the same names); B
starts at zero, so a fresh adapter leaves every logit exactly as the base model's. The
adapters are `nnx.LoRAParam`s, a subclass of `nnx.Param`: `TRAINABLE` selects them for the
optimizer (the base is frozen: no gradient, no moments, not checkpointed), `without_adapters`
gives the base model back (the reference model of the KL, free), `merge_lora` folds them into
the kernels for export. Stacked (`scan_layers`) kernels get stacked adapters [L, in, r].
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from visd_jax.lora_targets import ATTENTION, MLP, VISION, parse_targets
from visd_jax.models.layers import Dense

TRAINABLE = nnx.LoRAParam


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    rank: int
    alpha: float = 16.0
    targets: tuple[str, ...] = ATTENTION + MLP  # decoder projections by name
    vision: bool = False  # also the vision tower's qkv / proj / MLP (fc1, fc2)

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {self.rank}")
        unknown = sorted(set(self.targets) - set(ATTENTION + MLP))
        if unknown or not self.targets:
            raise ValueError(f"LoRA targets must be among {ATTENTION + MLP}, got {self.targets}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    parse_targets = staticmethod(parse_targets)


def _targets(model, spec: LoraSpec):
    for path, module in nnx.iter_modules(model):
        if not isinstance(module, Dense) or not path:
            continue
        in_vision = path[0] == "visual"
        if (in_vision and spec.vision and path[-1] in VISION) or (not in_vision and path[-1] in spec.targets):
            yield path, module


def add_lora(model, spec: LoraSpec, *, seed: int = 0, mesh=None):
    """Attaches adapters to `model` in place and returns it. Works eagerly, under
    `nnx.eval_shape` (abstract shapes for the fit check) and under jit; with `mesh`, eager
    adapters are placed on it by their logical names (the one RULES table)."""
    key = jax.random.key(seed)
    he = jax.nn.initializers.he_uniform()
    with nnx.use_eager_sharding(False):  # logical names are metadata here; `mesh` places them
        _attach(model, spec, key, he)
    if mesh is not None:
        from visd_jax.models.model import param_shardings

        state = nnx.state(model, TRAINABLE)
        nnx.update(model, jax.device_put(state, param_shardings(state, mesh)))
    return model


def _attach(model, spec, key, he):
    for n, (path, dense) in enumerate(list(_targets(model, spec))):
        kernel = dense.kernel
        names = tuple(kernel.get_metadata().get("out_sharding") or (None,) * kernel.ndim)
        shape = tuple(kernel.shape)
        lead, (din, dout) = shape[:-2], shape[-2:]  # lead: the stacked layers' [L] axis, if any
        k = jax.random.fold_in(key, n)
        a = he(k, (*lead, din, spec.rank), jnp.float32) if not lead else jax.vmap(
            lambda kk: he(kk, (din, spec.rank), jnp.float32))(jax.random.split(k, lead[0]))
        lora = nnx.LoRA(din, spec.rank, dout, rngs=nnx.Rngs(0), param_dtype=kernel.dtype)
        lora.lora_a = nnx.LoRAParam(a.astype(kernel.dtype), out_sharding=names[:-1] + (None,))
        lora.lora_b = nnx.LoRAParam(jnp.zeros((*lead, spec.rank, dout), kernel.dtype),
                                    out_sharding=names[:-2] + (None, names[-1]))
        dense.lora, dense.lora_scale = lora, float(spec.scale)


def has_lora(model) -> bool:
    return any(getattr(m, "lora", None) is not None for _, m in nnx.iter_modules(model) if isinstance(m, Dense))


def merge_lora(model):
    """Folds every adapter into its kernel (W + (alpha / r) A B, in float32, stored in the
    kernel's dtype) and removes it: the plain model an export writes. In place; returns it."""
    for _, dense in nnx.iter_modules(model):
        if not isinstance(dense, Dense) or getattr(dense, "lora", None) is None:
            continue
        a = dense.lora.lora_a[...].astype(jnp.float32)
        b = dense.lora.lora_b[...].astype(jnp.float32)
        w = dense.kernel[...]
        dense.kernel[...] = (w.astype(jnp.float32) + dense.lora_scale * jnp.matmul(a, b)).astype(w.dtype)
        dense.lora, dense.lora_scale = nnx.data(None), 0.0
    return model


def split_trainable(params: nnx.State, trainable=TRAINABLE):
    """(adapters, the rest) of a parameter state."""
    return nnx.split_state(params, trainable, ...)


def without_adapters(params: nnx.State) -> nnx.State:
    """`params` with every adapter zeroed: the base model (y = x W exactly)."""
    lora, rest = split_trainable(params)
    return nnx.merge_state(jax.tree.map(jnp.zeros_like, lora), rest)
