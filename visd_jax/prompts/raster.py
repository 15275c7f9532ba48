"""Fast building blocks of the prompt ops: separable region tests and exact uint8 scaling.

Every prompt's region is separable per box: "inside box k" is rows_k[i] & cols_k[j] and
"on ellipse ring k" is a test on fx_k[j] + fy_k[i]. The ops therefore compute [T, K, H]
and [T, K, W] vectors once and combine them inside one elementwise pass over the frame,
instead of broadcasting pixel coordinates against K boxes over the whole frame. The masks
are built as [T, H, W * 3] (column vectors repeated 3x) so that the innermost loop runs
over a long contiguous row, then reshaped to [T, H, W, 3] for the select: reading the
frames themselves through a reshape would keep XLA from writing a donated buffer in place.

`scale_uint8` is darken's round(x * factor) on uint8 in one vectorised elementwise pass
(no table gather, no float clip), bit-identical to the float32 formula on all 256 inputs.
"""
from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

# Up to this many boxes the per-box terms are unrolled into one elementwise expression
# (XLA fuses it into the final select); beyond it a reduction over K is cheaper to compile.
UNROLL_K = 8


def per_channel(cols_TxKxW, channels: int):
    """Repeat a column vector so it indexes the [T, H, W * C] view.

    Built with stack (a concatenate), not jnp.repeat (broadcast + reshape): XLA:CPU keeps
    the concatenate as its own small op instead of redoing it per pixel (measured 2x on
    red_circle and 4x on attention at 224x420).
    """
    t, k, w = cols_TxKxW.shape
    return jnp.stack([cols_TxKxW] * channels, axis=-1).reshape(t, k, w * channels)


def materialise(x_bool):
    """x_bool itself, computed once into a buffer instead of once per pixel of its consumer.

    Why: XLA:CPU fuses cheap producers (iota, box compares, the channel repeat) into the
    per-pixel loop that broadcasts them and redoes them for every pixel, which also keeps
    that loop from vectorising; optimization_barrier is stripped on CPU. A 1-wide max
    reduce-window over uint8 is the identity; XLA (jax 0.10.2) simplifies it away but
    leaves the small vectors in their own fusion (seen in the compiled HLO; darken 4x over
    plain jnp.repeat, 1.7x over `per_channel`). If a later XLA fuses them again, only
    speed is lost.
    """
    ones = (1,) * x_bool.ndim
    y = jax.lax.reduce_window(x_bool.astype(jnp.uint8), jnp.uint8(0), jax.lax.max, ones, ones, "VALID")
    return y > 0


def any_outer(rows, cols, combine):
    """[T, H, W] bool: any over k of combine(*rows_k[:, :, None], *cols_k[:, None, :]).

    rows: tuple of [T, K, H] arrays, cols: tuple of [T, K, W] arrays (same K).
    """
    t, k, h = rows[0].shape
    w = cols[0].shape[-1]

    def term(i):
        r = (v[:, i, :, None] for v in rows)
        c = (v[:, i, None, :] for v in cols)
        return combine(*r, *c)

    if k == 0:
        return jnp.zeros((t, h, w), bool)
    if k > UNROLL_K:
        terms = combine(*(v[..., :, None] for v in rows), *(v[..., None, :] for v in cols))
        return jnp.any(terms, axis=1)
    acc = term(0)
    for i in range(1, k):
        acc = acc | term(i)
    return acc


# 1.5 * 2**23. Added to a float32 v in [0, 2**22), it leaves round-half-even(v) in the low
# mantissa bits: the sum lies in [2**23, 2**24), where float32's spacing is 1, and the
# addition itself rounds half to even (the magic number is even, so parity is kept).
_ROUND_MAGIC = 12582912.0
_ROUND_MAGIC_BITS = int(np.float32(_ROUND_MAGIC).view(np.int32))  # 0x4B400000


def scale_uint8(x_uint8, factor):
    """round(float32(x) * float32(factor)) clipped to [0, 255], as uint8 (round half to even).

    The float32 product is kept (the ops' documented formula; its ties are real, e.g.
    float32(15) * float32(0.3) == 4.5 -> 4, so no integer multiply-shift reproduces it).
    What is avoided: a 256-entry table gather, which XLA:CPU runs per element (4x slower
    here), and, for a static factor in [0, 1] (which cannot leave [0, 255]), float round
    and float -> int convert, which XLA:CPU does not vectorise well: there the rounding is
    the magic-number addition and the integer is read from the sum's bits (1.6x faster
    alone, bench/RESULTS.md).
    """
    static = isinstance(factor, numbers.Real) and not isinstance(factor, bool)
    if static and 0.0 <= factor <= 1.0:
        product = x_uint8.astype(jnp.int32).astype(jnp.float32) * jnp.float32(factor)
        # max(product, 0) == product (x >= 0, factor >= 0). It stands between the multiply
        # and the add so that LLVM cannot contract them into an FMA, which rounds the exact
        # product once instead of the float32 product (10 of the 256 results differ for
        # 0.3, e.g. 15 -> 5); test_fast_paths checks every value, fused under jit.
        total = jnp.maximum(product, jnp.float32(0.0)) + jnp.float32(_ROUND_MAGIC)
        bits = jax.lax.bitcast_convert_type(total, jnp.int32)
        return (bits - _ROUND_MAGIC_BITS).astype(jnp.uint8)
    y = jnp.round(x_uint8.astype(jnp.float32) * jnp.asarray(factor, jnp.float32))
    # int32 clip: products of uint8 and a float32 factor stay far below 2**31 unless
    # |factor| > 8e6; beyond that XLA's convert saturates, which still clips correctly.
    return jnp.clip(y.astype(jnp.int32), 0, 255).astype(jnp.uint8)
