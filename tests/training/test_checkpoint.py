import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visd_jax.parallel import named_sharding
from visd_jax.training.checkpoint import Checkpointer, abstract_like


def _state(mesh, scale):
    w = jax.device_put(jnp.arange(32.0).reshape(8, 4) * scale, named_sharding(mesh, ("embed", "mlp"), (8, 4)))
    return {"params": {"w": w}, "step": jnp.int32(scale), "key": jax.random.key_data(jax.random.key(scale))}


def test_save_restore_sharded_with_json_meta(tmp_path, mesh8):
    ck = Checkpointer(tmp_path, every=1, keep=2)
    state = _state(mesh8, 3)
    meta = {"data_iter": {"index": 17, "seed": 0}, "skipped": {"bad_box": 2}}
    assert ck.save(3, state, meta)
    ck.wait()
    step, got, got_meta = ck.restore_latest(abstract_like(state))
    assert step == 3 and got_meta == meta
    np.testing.assert_array_equal(np.asarray(got["params"]["w"]), np.asarray(state["params"]["w"]))
    assert got["params"]["w"].sharding == state["params"]["w"].sharding
    np.testing.assert_array_equal(np.asarray(got["key"]), np.asarray(state["key"]))
    ck.close()


def test_interval_and_keep_last_k(tmp_path, mesh8):
    ck = Checkpointer(tmp_path, every=2, keep=2)
    saved = [s for s in range(1, 8) if ck.save(s, _state(mesh8, s), {})]
    ck.wait()
    assert saved == [2, 4, 6]
    assert ck.all_steps() == [4, 6]
    assert ck.save(7, _state(mesh8, 7), {}, force=True)
    ck.close()
    # a fresh manager (a restarted run) finds the newest
    again = Checkpointer(tmp_path, every=2, keep=2)
    assert again.latest_step() == 7
    again.close()


def test_empty_directory_has_nothing_to_resume(tmp_path):
    ck = Checkpointer(tmp_path / "fresh", every=1)
    assert ck.restore_latest({}) is None
    ck.close()


@pytest.mark.parametrize("kw, msg", [({"every": 0}, "every"), ({"every": 1, "keep": 0}, "keep")])
def test_bad_settings(tmp_path, kw, msg):
    with pytest.raises(ValueError, match=msg):
        Checkpointer(tmp_path, **kw)


def test_relative_directory_works(tmp_path, mesh8, monkeypatch):
    # the main job's default work directory is relative to the current directory
    monkeypatch.chdir(tmp_path)
    ck = Checkpointer("workdir/run/checkpoints", every=1, keep=1)
    assert ck.directory.is_absolute()
    state = _state(mesh8, 2)
    ck.save(1, state, {"k": 1})
    ck.wait()
    step, got, meta = ck.restore_latest(abstract_like(state))
    assert step == 1 and meta == {"k": 1}
    np.testing.assert_array_equal(np.asarray(got["params"]["w"]), np.asarray(state["params"]["w"]))
    ck.close()


def _flat(mesh, scale):
    w = jax.device_put(jnp.arange(32.0).reshape(8, 4) * scale, named_sharding(mesh, ("embed", "mlp"), (8, 4)))
    return {"['params']['w']": w, "['step']": jnp.int32(scale)}


@pytest.mark.parametrize("damage", ["array_file", "metadata"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, mesh8, damage, caplog):
    from visd_jax.training.checkpoint import restore_newest

    ck = Checkpointer(tmp_path, every=1, keep=3, async_save=False)
    for s in (1, 2):
        ck.save(s, _flat(mesh8, s), {"at": s})
    ck.close()
    newest = tmp_path / "2"
    files = [f for f in (newest / "state").rglob("*") if f.is_file()]
    victims = ([f for f in files if f.name == "_METADATA"] if damage == "metadata"
               else [f for f in files if "/d/" in str(f)])
    assert victims, sorted(map(str, files))
    for f in victims:
        f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    ck = Checkpointer(tmp_path, every=1, keep=3)
    step, flat, meta, missing, damaged = restore_newest(ck, _flat(mesh8, 0))
    assert (step, meta, missing, damaged) == (1, {"at": 1}, [], [2])
    ck.set_aside(damaged)
    assert ck.all_steps() == [1] and (tmp_path / "2.damaged").is_dir()
    np.testing.assert_array_equal(np.asarray(flat["['params']['w']"]), np.arange(32.0).reshape(8, 4))
    assert "checkpoint" in caplog.text and "/2 is damaged" in caplog.text
    for f in (tmp_path / "1" / "state").rglob("*"):  # nothing intact left: a clear error
        if f.is_file() and "/d/" in str(f):
            f.write_bytes(b"")
    with pytest.raises(RuntimeError, match="no checkpoint in .* restores"):
        restore_newest(ck, _flat(mesh8, 0))
    ck.close()
