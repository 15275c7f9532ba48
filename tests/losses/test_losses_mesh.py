"""Every loss under jax.jit on the 8-device mesh equals its single-device result.

Batch is sharded over `data` (and `fsdp`, per RULES), vocab over `tensor`; the losses
place their own logical-axis constraints inside, which must not change any number.
"""
import jax
import jax.numpy as jnp
import numpy as np

from visd_jax import losses as L
from visd_jax.parallel import named_sharding

F32 = dict(rtol=2e-5, atol=2e-5)
B, T, D, V = 8, 12, 8, 32

NAMES = {
    "hidden": ("batch", "seq", "embed"), "hidden_t": ("batch", "seq", "embed"),
    "unembed": ("embed", "vocab"), "unembed_t": ("embed", "vocab"),
    "targets": ("batch", "seq"), "old_logp": ("batch", "seq"), "mask": ("batch", "seq"),
    "rewards": ("batch", None), "sd_mask": ("batch", "seq"), "sd_selected": ("batch",),
    "g": ("batch", "seq"),
}


def inputs():
    rng = np.random.default_rng(0)
    f32 = np.float32
    mask = np.arange(T)[None] < rng.integers(1, T + 1, size=B)[:, None]
    mask[0] = False
    return dict(
        hidden=rng.normal(size=(B, T, D)).astype(f32), hidden_t=rng.normal(size=(B, T, D)).astype(f32),
        unembed=(rng.normal(size=(D, V)) * 0.5).astype(f32), unembed_t=(rng.normal(size=(D, V)) * 0.5).astype(f32),
        targets=rng.integers(0, V, size=(B, T)).astype(np.int32),
        old_logp=np.log(rng.uniform(0.01, 0.2, size=(B, T))).astype(f32),
        mask=mask, rewards=np.concatenate([np.full((1, 4), 2.0), rng.uniform(0, 3, size=(B - 1, 4))]).astype(f32),
        sd_mask=mask[::-1].copy(), sd_selected=np.arange(B) % 3 == 0,
        g=rng.normal(size=(B, T)).astype(f32),
    )


def every_loss(x):
    out = {}

    def policy(h, w):
        return L.token_logprobs(hidden=h, unembed=w, targets=x["targets"], chunk_size=5)

    logp, vjp = jax.vjp(policy, x["hidden"], x["unembed"])
    out["logp"] = logp
    out["dhidden"], out["dunembed"] = vjp(x["g"])
    zs = jnp.einsum("btd,dv->btv", x["hidden"], x["unembed"])
    zt = jnp.einsum("btd,dv->btv", x["hidden_t"], x["unembed_t"])
    out["logp_from_logits"] = L.token_logprobs_from_logits(logits=zs, targets=x["targets"])
    adv = L.group_advantages(rewards=x["rewards"])[:, 0]
    out["adv"] = adv
    for level in ("sequence", "token"):
        loss, m = L.gspo_loss(logp=logp, old_logp=x["old_logp"], advantages=adv, mask=x["mask"], level=level)
        out[f"gspo_{level}"] = loss
        out[f"gspo_{level}_clip_low"] = m["gspo/clip_frac_low"]
    for mode in ("topk", "sampled"):
        out[f"signal_{mode}"] = L.token_signal_from_logits(
            student_logits=zs, teacher_logits=zt, targets=x["targets"], mode=mode, top_k=4, gamma=0.2)
    sig = L.token_signal(student_hidden=x["hidden"], teacher_hidden=x["hidden_t"], student_unembed=x["unembed"],
                         teacher_unembed=x["unembed_t"], targets=x["targets"], top_k=4, chunk_size=5)
    out["signal_chunked"] = sig
    tok_adv, w, _ = L.direction_magnitude_advantages(advantages=adv, signal=sig, mask=x["mask"], mix=0.5)
    out["tok_adv"] = tok_adv
    out["nll"] = L.prompted_rollout_nll(logp=logp, mask=x["sd_mask"], selected=x["sd_selected"])[0]
    out["kl"] = L.magnitude_scaled_kl(student_logits=zs, teacher_logits=zt, magnitude=w, mask=x["mask"])[0]

    def objective(h):
        lp = L.token_logprobs(hidden=h, unembed=x["unembed"], targets=x["targets"], chunk_size=5)
        return L.visd_objective(logp=lp, old_logp=x["old_logp"], advantages=adv, mask=x["mask"], signal=sig,
                                mix=0.5, sd_logp=lp, sd_mask=x["sd_mask"], sd_selected=x["sd_selected"],
                                kl_student_logits=zs, kl_teacher_logits=zt, beta_kl=0.1)[0]

    out["objective"], out["dobjective"] = jax.value_and_grad(objective)(x["hidden"])
    return out


def test_every_loss_on_the_8_device_mesh_equals_single_device(mesh8):
    x = inputs()
    single = jax.jit(every_loss)(jax.device_put(x, jax.devices()[0]))
    shardings = {k: named_sharding(mesh8, NAMES[k], v.shape) for k, v in x.items()}
    assert shardings["hidden"].spec[0] == ("data", "fsdp") and shardings["unembed"].spec[1] == "tensor"
    with jax.set_mesh(mesh8):
        sharded = jax.jit(every_loss, in_shardings=(shardings,))(jax.device_put(x, shardings))
    assert len(sharded["logp"].sharding.device_set) == 8
    for k in single:
        np.testing.assert_allclose(np.asarray(sharded[k]), np.asarray(single[k]), **F32, err_msg=k)
