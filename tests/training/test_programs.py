"""`Programs`: compiles counted per program by what jit keys on, and a warning once a program
passes its bucket count."""
import logging

import jax
import jax.numpy as jnp
import numpy as np

from visd_jax.training.metrics import timer
from visd_jax.training.programs import Programs


def test_counts_follow_jits_cache_and_warn_past_the_bound(caplog):
    p = Programs()
    p.bound("double", 1)
    fn = p.get("double", (), lambda: jax.jit(lambda s, x: s + 2 * x), skip=1)
    jitted = p._fns[("double", ())]
    with caplog.at_level(logging.WARNING, logger="visd_jax.training.programs"):
        for n in (3, 3, 4, 3):  # two shapes; the state argument (skipped) never counts
            fn(jnp.float32(n), np.ones((n,), np.float32))
    assert p.compiles() == {"double": 2} == {"double": jitted._cache_size()}
    assert p.metrics() == {"compiles/double": 2.0}
    assert len(caplog.records) == 1 and "double compiled 2 times, more than its 1 buckets" in caplog.text
    p.track("sample", 4, (np.ones((2, 8)),))  # a program jitted elsewhere
    p.track("sample", 4, (np.ones((2, 8)),))
    assert p.compiles()["sample"] == 1


def test_timer_adds_up_and_survives_an_error():
    out = {}
    for _ in range(2):
        with timer(out, "t"):
            pass
    try:
        with timer(out, "e"):
            raise ValueError
    except ValueError:
        pass
    assert out["t"] >= 0 and "e" in out
