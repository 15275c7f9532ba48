import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from visd_jax.parallel import MeshConfig, RULES, logical_to_spec, make_mesh, mesh_shape, shard, shard_like


def test_fill_axis_takes_remaining_devices():
    assert mesh_shape(MeshConfig(data=-1, fsdp=2, tensor=2), 8) == (2, 2, 2)
    assert mesh_shape(MeshConfig(data=1, fsdp=-1, tensor=1), 8) == (1, 8, 1)
    assert mesh_shape(MeshConfig(), 1) == (1, 1, 1)


@pytest.mark.parametrize(
    "cfg, msg",
    [
        (MeshConfig(data=-1, fsdp=-1), "at most one"),
        (MeshConfig(data=3, fsdp=1, tensor=1), "needs 3 devices"),
        (MeshConfig(data=-1, fsdp=3), "not divisible"),
        (MeshConfig(data=0), "positive int"),
    ],
)
def test_bad_mesh_configs_name_the_problem(cfg, msg):
    with pytest.raises(ValueError, match=msg):
        mesh_shape(cfg, 8)


def test_unknown_keys_and_axis_types_rejected():
    with pytest.raises(ValueError, match="unknown keys"):
        make_mesh({"data": 8, "model": 1})
    with pytest.raises(ValueError, match="axis_types"):
        make_mesh(MeshConfig(axis_types="manual"))


def test_mesh_on_one_and_eight_devices(mesh8):
    one = make_mesh(devices=jax.devices()[:1])
    assert dict(one.shape) == {"data": 1, "fsdp": 1, "tensor": 1}
    assert dict(mesh8.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert make_mesh({"data": 1, "fsdp": 1, "tensor": -1}).shape["tensor"] == 8


def test_rules_table_is_the_single_source():
    names = [n for n, _ in RULES]
    assert len(names) == len(set(names))
    assert dict(RULES)["vocab"] == "tensor"
    assert logical_to_spec(("batch", "seq", "vocab")) == P(("data", "fsdp"), None, "tensor")
    with pytest.raises(ValueError, match="unknown logical axis"):
        logical_to_spec(("bogus",))


def test_indivisible_dims_fall_back_to_replication(mesh8):
    assert logical_to_spec(("batch", "vocab"), mesh=mesh8, shape=(2, 9)) == P("data", None)
    assert logical_to_spec(("batch", "vocab"), mesh=mesh8, shape=(8, 10)) == P(("data", "fsdp"), "tensor")
    # a mesh axis is used once per spec
    assert logical_to_spec(("embed", "batch"), mesh=mesh8, shape=(4, 4)) == P("fsdp", "data")


def test_shard_constraint_under_set_mesh(mesh8):
    f = jax.jit(lambda x: shard(x * 2.0, ("batch", "vocab")))
    x = np.arange(64, dtype=np.float32).reshape(8, 8)
    with jax.set_mesh(mesh8):
        y = f(x)
    assert y.sharding.spec == P(("data", "fsdp"), "tensor")
    np.testing.assert_array_equal(np.asarray(y), x * 2)
    # without a mesh it is a no-op
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda x: shard(x, ("batch", "vocab")))(x)), x)


def test_shard_like_places_a_tree(mesh8):
    tree = {"w": jnp.ones((4, 8)), "b": jnp.ones((8,))}
    out = shard_like(tree, {"w": ("embed", "mlp"), "b": ("mlp",)}, mesh8)
    assert out["w"].sharding.spec == P("fsdp", "tensor")
    assert out["b"].sharding.spec == P("tensor")
