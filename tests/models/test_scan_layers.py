"""scan_layers=True: stacked decoder parameters run by one scan equal the unrolled layers.

The reference is the unscanned model (itself checked against transformers in
test_parity.py) holding the same weights; the stacking is done here with NumPy, by path,
independently of hf_io. Both models run the same float32 ops per layer, so logits agree to
float32 rounding (scan vs unrolled fusion may reorder a reduction: ~1e-6 on O(5) logits).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from tests.models.hf_reference import GRID, SECONDS, make_batch
from visd_jax.models import Qwen25VL, Qwen25VLConfig

CFG = Qwen25VLConfig.preset("tiny")
L = CFG.text.num_hidden_layers
TOL = 1e-5  # float32 logits of O(5)
EOS, PAD = 1002, 1000


def _flat(model) -> dict[tuple, np.ndarray]:
    return {tuple(p): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def _set(model, values: dict[tuple, np.ndarray]) -> None:
    state = nnx.state(model, nnx.Param)
    flat = list(nnx.to_flat_state(state))
    assert {tuple(p) for p, _ in flat} == set(values)
    for p, var in flat:
        var.set_value(jax.device_put(values[tuple(p)].astype(var.get_value().dtype), var.get_value().sharding))
    nnx.update(model, nnx.from_flat_state(flat))


def _is_layer(p) -> bool:
    return p[:2] == ("model", "layers")


def _stacked(unscanned: dict) -> dict:
    """The scanned layout of unscanned params: model.layers.<i>.x -> model.layers.x [L, ...]."""
    out = {p: v for p, v in unscanned.items() if not _is_layer(p)}
    for p in unscanned:
        if _is_layer(p) and p[2] == 0:
            out[p[:2] + p[3:]] = np.stack([unscanned[p[:2] + (i,) + p[3:]] for i in range(L)])
    return out


def _unstacked(scanned: dict) -> dict:
    out = {p: v for p, v in scanned.items() if not _is_layer(p)}
    for p, v in scanned.items():
        if _is_layer(p):
            out.update({p[:2] + (i,) + p[2:]: v[i] for i in range(L)})
    return out


def _randomise(model, seed: int) -> None:
    """Weights large enough that every layer matters, norms and biases away from 1 and 0."""
    rng = np.random.default_rng(seed)
    vals = {}
    for p, v in _flat(model).items():
        base = 1.0 if "norm" in "/".join(map(str, p)) else 0.0
        vals[p] = (base + 0.1 * rng.standard_normal(v.shape)).astype(np.float32)
    _set(model, vals)


@pytest.fixture(scope="module")
def pair():
    """(unscanned, scanned) tiny models holding the same float32 weights."""
    unscanned = Qwen25VL.create(CFG, seed=1)
    _randomise(unscanned, 0)
    scanned = Qwen25VL.create(CFG, seed=2, scan_layers=True)
    _set(scanned, _stacked(_flat(unscanned)))
    return unscanned, scanned


@pytest.fixture(scope="module")
def batch():
    return make_batch(seed=3)  # left-padded text + video + text, two rows


def _forward(model, batch):
    ids, mask, px = batch
    return np.asarray(nnx.jit(lambda m, a, b, c, s: m(a, b, c, GRID, s))(model, ids, mask, px, SECONDS))


@pytest.fixture(scope="module")
def reference_logits(pair, batch):
    return _forward(pair[0], batch)


def _close(a, b, valid):
    np.testing.assert_allclose(a[valid], b[valid], rtol=0, atol=TOL)


def test_scanned_parameters_are_stacked_with_a_layers_axis():
    model = Qwen25VL.create(CFG, seed=0, scan_layers=True)
    kernel = model.model.layers.self_attn.q_proj.kernel
    assert kernel[...].shape == (L, CFG.text.hidden_size, CFG.text.num_attention_heads * CFG.text.head_dim)
    assert kernel.get_metadata()["out_sharding"] == ("layers", "embed", "heads")
    assert model.model.layers.input_layernorm.weight.get_metadata()["out_sharding"] == ("layers", "norm")
    # Every layer has its own random init.
    k = np.asarray(kernel[...])
    assert not np.allclose(k[0], k[1])
    # Vision tower and embeddings keep their layout.
    assert model.model.embed_tokens[...].shape == (CFG.text.vocab_size, CFG.text.hidden_size)


def test_logits_equal_unscanned_text_and_video(pair, batch, reference_logits):
    _, scanned = pair
    valid = batch[1].astype(bool)
    assert np.abs(reference_logits[valid]).max() > 1.0  # weights large enough that layers matter
    _close(_forward(scanned, batch), reference_logits, valid)


def _grads(model, batch):
    # Text only: the decoder is what differs between the layouts, and the vision tower's
    # backward would triple the compile time of these tests.
    ids, mask, _ = batch
    ids = np.where(ids == CFG.video_token_id, 7, ids)

    def loss(m):
        logits = m(ids, mask)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], ids[:, 1:])
        w = mask[:, 1:] * mask[:, :-1]
        return jnp.sum(ce * w) / jnp.sum(w)

    value, grads = nnx.jit(nnx.value_and_grad(loss))(model)
    return float(value), {tuple(p): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(grads)}


@pytest.mark.slow
@pytest.mark.parametrize("remat", [False, True])
def test_gradients_equal_unscanned(pair, batch, remat):
    unscanned, scanned = pair
    if remat:  # the same weights in remat'ed models of both layouts
        unscanned_r, scanned_r = Qwen25VL.create(CFG, remat=True), Qwen25VL.create(CFG, remat=True, scan_layers=True)
        _set(unscanned_r, _flat(unscanned))
        _set(scanned_r, _flat(scanned))
        unscanned, scanned = unscanned_r, scanned_r
    loss_u, g_u = _grads(unscanned, batch)
    loss_s, g_s = _grads(scanned, batch)
    np.testing.assert_allclose(loss_s, loss_u, rtol=1e-6)
    g_s = _unstacked(g_s)
    assert set(g_s) == set(g_u)
    for p, g in g_u.items():
        # float32 gradients of O(1): rounding only (the same ops, possibly fused differently)
        np.testing.assert_allclose(g_s[p], g, rtol=1e-4, atol=1e-6, err_msg=str(p))
    assert np.abs(g_u[("model", "layers", 0, "mlp", "up_proj", "kernel")]).max() > 1e-3
    assert not g_u[("visual", "patch_embed")].any()  # text only: the tower is not in the graph


@pytest.mark.slow
def test_greedy_generate_equal_unscanned(pair, batch):
    from visd_jax.sampling import Prompts, generate

    ids, mask, px = batch
    prompts = Prompts(ids[:, :-1], mask[:, :-1], px, GRID, SECONDS)  # row 0's eos dropped
    kw = dict(key=jax.random.key(0), max_new_tokens=8, temperature=0.0, stop_ids=[EOS], pad_id=PAD)
    ref = generate(pair[0], prompts, **kw)
    out = generate(pair[1], prompts, **kw)
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ref.tokens))
    np.testing.assert_array_equal(np.asarray(out.mask), np.asarray(ref.mask))
    np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(ref.logprobs), rtol=0, atol=TOL)
    assert len(set(np.asarray(ref.tokens).ravel().tolist())) > 2  # not a constant output


@pytest.mark.slow
def test_created_sharded_on_mesh_and_forward_equals_single_device(mesh8, pair, batch, reference_logits):
    model = Qwen25VL.create(CFG, mesh=mesh8, seed=2, scan_layers=True)
    layers = model.model.layers
    # The layers axis is never split; the others follow the unscanned layout's rules.
    assert layers.self_attn.q_proj.kernel[...].sharding.spec == P(None, "fsdp", "tensor")
    assert layers.self_attn.o_proj.kernel[...].sharding.spec == P(None, "tensor", "fsdp")
    assert layers.mlp.down_proj.kernel[...].sharding.spec == P(None, "tensor", "fsdp")
    assert layers.input_layernorm.weight[...].sharding.spec == P(None, None)
    assert layers.mlp.gate_proj.kernel[...].addressable_shards[0].data.shape == (L, 32, 64)
    _set(model, _flat(pair[1]))  # same values, each kept on its mesh placement
    with jax.set_mesh(mesh8):
        out = _forward(model, batch)
    _close(out, reference_logits, batch[1].astype(bool))


@pytest.mark.slow
def test_hf_round_trip_between_layouts(pair, batch, reference_logits, tmp_path, mesh8):
    from visd_jax.models.hf_io import load_hf_checkpoint, save_hf_checkpoint

    unscanned, scanned = pair
    save_hf_checkpoint(scanned, tmp_path / "from_scanned")
    save_hf_checkpoint(unscanned, tmp_path / "from_unscanned")
    # The same tensors, names and order: byte-identical files (the unscanned writer's output
    # is what test_parity checks transformers loads back).
    a = (tmp_path / "from_scanned" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "from_unscanned" / "model.safetensors").read_bytes()

    back_u = load_hf_checkpoint(tmp_path / "from_scanned")
    assert all(np.array_equal(v, _flat(unscanned)[p]) for p, v in _flat(back_u).items())
    back_s = load_hf_checkpoint(tmp_path / "from_unscanned", scan_layers=True)
    assert all(np.array_equal(v, _flat(scanned)[p]) for p, v in _flat(back_s).items())
    _close(_forward(back_s, batch), reference_logits, batch[1].astype(bool))
    # Sharded load assembles each device's [L, ...] block from the per-layer tensors.
    back_8 = load_hf_checkpoint(tmp_path / "from_unscanned", scan_layers=True, mesh=mesh8)
    k8 = back_8.model.layers.mlp.up_proj.kernel[...]
    assert k8.sharding.spec == P(None, "fsdp", "tensor")
    np.testing.assert_array_equal(np.asarray(k8), _flat(scanned)[("model", "layers", "mlp", "up_proj", "kernel")])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.pop("model.layers.1.self_attn.k_proj.bias"),
         "missing tensors: ['model.layers.1.self_attn.k_proj.bias']"),
        (lambda t: t.__setitem__("model.layers.0.mlp.up_proj.weight", np.ones((128, 63), np.float32)),
         "tensor 'model.layers.0.mlp.up_proj.weight' has shape (128, 63), expected (128, 64)"),
        (lambda t: t.__setitem__("model.layers.2.mlp.up_proj.weight", np.ones((128, 64), np.float32)),
         "unexpected tensors not used by Qwen25VL: ['model.layers.2.mlp.up_proj.weight']"),
    ],
)
def test_bad_checkpoint_names_the_tensor_when_scanned(tmp_path, edit, message):
    from safetensors.numpy import load_file, save_file

    from visd_jax.models.hf_io import CheckpointError, load_hf_checkpoint, save_hf_checkpoint

    save_hf_checkpoint(Qwen25VL.create(CFG, seed=0), tmp_path / "ok")
    tensors = load_file(str(tmp_path / "ok" / "model.safetensors"))
    edit(tensors)
    (tmp_path / "bad").mkdir()
    save_file(tensors, str(tmp_path / "bad" / "model.safetensors"))
    (tmp_path / "bad" / "config.json").write_text((tmp_path / "ok" / "config.json").read_text())
    with pytest.raises(CheckpointError) as err:
        load_hf_checkpoint(tmp_path / "bad", scan_layers=True)
    assert message in str(err.value)


@pytest.mark.slow
def test_training_config_flag_builds_a_scanned_model(mesh8):
    from visd_jax.training.config import base_config
    from visd_jax.training.setup import build_model

    cfg = base_config()
    cfg.model.preset = "tiny"
    cfg.model.scan_layers = True
    model, _, _ = build_model(cfg, mesh8)
    kernel = model.model.layers.mlp.up_proj.kernel[...]
    assert kernel.shape == (L, CFG.text.hidden_size, CFG.text.intermediate_size)
    assert kernel.sharding.spec == P(None, "fsdp", "tensor")
    cfg.model.scan_layers = False
    model, _, _ = build_model(cfg, None)
    assert model.model.layers[0].mlp.up_proj.kernel[...].shape == (CFG.text.hidden_size, CFG.text.intermediate_size)


@pytest.mark.slow
def test_scanned_decode_loop_updates_the_cache_in_place():
    # As tests/sampling/test_mesh.py for the unrolled model: in place on the scan carry too.
    from tests.sampling.checks import assert_decode_cache_in_place

    assert_decode_cache_in_place(Qwen25VL.create(CFG, seed=0, scan_layers=True))


@pytest.mark.parametrize("remat", [False, True])
def test_one_scan_over_the_layers_with_remat_inside(remat):
    # Deep config: the traced program holds one layer body, whatever the depth.
    import dataclasses

    cfg = dataclasses.replace(CFG, text=dataclasses.replace(CFG.text, num_hidden_layers=12))
    with nnx.use_eager_sharding(False):
        abstract = nnx.eval_shape(lambda: Qwen25VL(cfg, rngs=nnx.Rngs(0), remat=remat, scan_layers=True))
    graphdef, state = nnx.split(abstract)
    jaxpr = jax.make_jaxpr(lambda s, ids: nnx.merge(graphdef, s)(ids))(state, jnp.zeros((1, 5), jnp.int32))
    text = str(jaxpr)
    scans = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "scan"]
    assert len(scans) == 1 and scans[0].params["length"] == 12
    # 7 projections + 2 attention einsums, once for all 12 layers, + the lm_head
    assert text.count("dot_general") == 7 + 2 + 1
    assert ("remat2[" in str(scans[0].params["jaxpr"])) == remat  # jax.checkpoint, in the scan body
