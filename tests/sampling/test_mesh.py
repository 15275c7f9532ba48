"""generate() on the 8-device mesh equals one device; the decode loop writes its cache in place."""
from __future__ import annotations

import pathlib
import sys

import jax
import numpy as np
import pytest
from flax import nnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "models"))
from hf_reference import GRID, SECONDS, make_batch  # noqa: E402

from visd_jax.models import Qwen25VL, Qwen25VLConfig  # noqa: E402
from visd_jax.sampling import Prompts, generate  # noqa: E402
from tests.sampling.checks import assert_decode_cache_in_place  # noqa: E402

EOS, PAD = 1002, 1000


def _prompts():
    ids, mask, px = make_batch(seed=2)
    return Prompts(ids[:, :-1], mask[:, :-1], px, GRID, SECONDS)


@pytest.mark.slow
def test_generate_on_mesh_equals_single_device(mesh8):
    cfg = Qwen25VLConfig.preset("tiny")
    single = Qwen25VL.create(cfg, seed=4)
    sharded = Qwen25VL.create(cfg, mesh=mesh8, seed=4)
    # Identical values, each on its own placement (jit may change the init's last bit).
    nnx.update(sharded, jax.tree.map(lambda a, b: jax.device_put(np.asarray(a), b.sharding),
                                     nnx.state(single), nnx.state(sharded)))
    layer = sharded.model.layers[0].self_attn
    assert layer.k_proj.kernel[...].sharding.spec[1] == "tensor"  # kv heads over tensor
    p = _prompts()
    # 2 prompts x G=2: the 4 rows shard over data x fsdp; 2 kv heads over tensor.
    kw = dict(key=jax.random.key(11), num_samples=2, max_new_tokens=6, stop_ids=[EOS], pad_id=PAD)
    for settings in (dict(temperature=0.0), dict(temperature=0.8, top_p=0.9, top_k=200)):
        one = generate(single, p, **kw, **settings)
        with jax.set_mesh(mesh8):
            eight = generate(sharded, p, **kw, **settings)
        assert len(eight.tokens.sharding.device_set) == 8
        np.testing.assert_array_equal(np.asarray(eight.tokens), np.asarray(one.tokens))
        np.testing.assert_array_equal(np.asarray(eight.mask), np.asarray(one.mask))
        # float32: only the order of the sharded reductions differs.
        np.testing.assert_allclose(np.asarray(eight.logprobs), np.asarray(one.logprobs), rtol=1e-5, atol=1e-5)
        assert len({tuple(r) for r in np.asarray(one.tokens)}) > 1


def test_decode_loop_updates_the_cache_in_place():
    assert_decode_cache_in_place(Qwen25VL.create(Qwen25VLConfig.preset("tiny"), seed=0))
