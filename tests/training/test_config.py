import pytest

from experiments import gspo, visd_v5e, visioncoach
from visd_jax.training import config
from visd_jax.training.config import validate


@pytest.mark.parametrize("variant", visd_v5e.VARIANTS)
def test_variants_are_valid_once_required_paths_are_given(variant, monkeypatch):
    monkeypatch.setattr(config, "gcs_available", lambda: True)  # the tpu extra's gcsfs
    c = visd_v5e.get_config(variant)
    if variant != "local":
        c.model.path = "/ckpt/Qwen2.5-VL-7B"
        c.data.annotations = "/data/stgr.json"
        c.workdir = "gs://bucket/run"
    validate(c)


def test_siblings_share_the_trainer_and_differ_in_mode():
    assert visd_v5e.get_config().mode == "visd_coach"
    assert gspo.get_config().mode == "gspo"
    assert visioncoach.get_config().mode == "visioncoach"
    assert gspo.get_config().rl.to_dict() == visd_v5e.get_config().rl.to_dict()


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown variant 'v6'"):
        visd_v5e.get_config("v6")


@pytest.mark.parametrize(
    "field, value, msg",
    [
        ("mode", "ppo", "config.mode='ppo'"),
        ("rl.num_generations", 1, "config.rl.num_generations=1"),
        ("rl.minibatches", 3, "must divide"),
        ("coach.selector", "fixed:blur", "fixed:KIND"),
        ("rl.top_p", 1.5, r"in \(0, 1\]"),
        ("visd.clip", -0.1, "config.visd.clip"),
        ("data.bad_records", "ignore", "skip or raise"),
        ("model.path", "/also/a/path", "exactly one of model.preset"),
    ],
)
def test_bad_values_name_the_field(field, value, msg):
    c = visd_v5e.get_config("local")
    section, _, key = field.rpartition(".")
    node = c[section] if section else c
    node[key] = value
    with pytest.raises(ValueError, match=msg):
        validate(c)


def test_v5e_needs_a_model_path_and_annotations():
    c = visd_v5e.get_config("v5e_8")
    c.data.annotations = "/a.json"
    with pytest.raises(ValueError, match="model.path"):
        validate(c)
    c.model.path = "/ckpt"
    c.data.annotations = ""
    with pytest.raises(ValueError, match="data.annotations"):
        validate(c)


def test_gs_workdir_without_gcsfs_fails_at_start_up_naming_the_fix(monkeypatch):
    c = visd_v5e.get_config("v5e_8")
    c.model.path, c.data.annotations, c.workdir = "/ckpt", "/a.json", "gs://bucket/run"
    monkeypatch.setattr(config, "gcs_available", lambda: False)
    with pytest.raises(ValueError, match=r"config.workdir='gs://bucket/run'.*gcsfs.*\[tpu\]"):
        validate(c)
    monkeypatch.setattr(config, "gcs_available", lambda: True)
    validate(c)


def test_every_field_has_a_rule_and_presets_match_the_models():
    from visd_jax.models.config import _PRESETS

    ruled = {f for f, _, _ in config._RULES}
    assert sorted(set(config._flat(config.base_config())) - ruled) == []
    assert set(config.PRESETS) == set(_PRESETS)
