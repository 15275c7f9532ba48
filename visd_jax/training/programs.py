"""One compile cache for every jitted program of a run, and how often each has compiled.

jit compiles a program again for every new static argument or input shape. With bucketed
batches (`training.batch`) that should happen at most once per bucket; `Programs` counts
the distinct signatures each program has been called with (static key + the shapes and
dtypes of its batch arguments, which is what jit keys its cache on), reports them as
`compiles/<program>` metrics, and warns when a program passes its bucket count: a sign
that some input escaped the buckets and the run is paying a compile per step.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Hashable

import jax

log = logging.getLogger(__name__)


def signature(args) -> tuple:
    """What jit keys on, for these arguments: tree structure (static fields included) and
    each leaf's shape and dtype."""
    leaves, treedef = jax.tree.flatten(args)
    return treedef, tuple((tuple(getattr(x, "shape", ())), str(getattr(x, "dtype", type(x).__name__)))
                          for x in leaves)


class Programs:
    def __init__(self):
        self._fns: dict[tuple, Callable] = {}
        self._seen: dict[str, set] = {}
        self._bounds: dict[str, int] = {}

    def bound(self, name: str, n: int):
        """At most `n` compiles expected of `name` (its bucket count)."""
        self._bounds[name] = int(n)

    def get(self, name: str, key: Hashable, build: Callable[[], Callable], *, skip: int = 1) -> Callable:
        """The program `name` for static `key`, built once; each call is counted by the
        signature of its arguments after the first `skip` (the train state, whose shapes
        never change, is not hashed every step)."""
        k = (name, key)
        if k not in self._fns:
            self._fns[k] = build()
        fn = self._fns[k]

        def call(*args):
            self.track(name, key, args[skip:])
            return fn(*args)

        call.lower = fn.lower  # AOT (tpu/compile.py): lowered on abstract inputs, never called
        return call

    def track(self, name: str, key: Hashable, args) -> None:
        """Counts a call of a program jitted elsewhere (the sampler's)."""
        seen = self._seen.setdefault(name, set())
        sig = (key, signature(args))
        if sig in seen:
            return
        seen.add(sig)
        limit = self._bounds.get(name)
        if limit is not None and len(seen) > limit:
            log.warning("program %s compiled %d times, more than its %d buckets: an input shape escaped "
                        "the buckets (%s)", name, len(seen), limit, sig[1][1][:4])

    def compiles(self) -> dict[str, int]:
        return {n: len(s) for n, s in sorted(self._seen.items())}

    def metrics(self) -> dict[str, float]:
        return {f"compiles/{n}": float(c) for n, c in self.compiles().items()}
