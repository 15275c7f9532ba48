"""Golden one-step regression (nanodo's train_test pattern): the real jitted RL update with
every loss term on, from a fixed seed and a fixed batch, must give exactly the recorded
metrics and parameter checksum. A change to any of the model, the losses, the optimizer or
the step that moves a number fails here; re-record only for an intended change, and say why
in the commit.

Tolerance: rtol 1e-5 on floats (a few float32 ulps of the reductions, in case the CI CPU
picks other vector instructions), integer-valued counts exactly.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from visd_jax.models import Qwen25VL, Qwen25VLConfig
from visd_jax.training.schedules import make_optimizer
from visd_jax.models.canvas import token_layout
from visd_jax.training.batch import RolloutBatch
from visd_jax.training.step import Scored, Steps

B, L, T = 4, 16, 8

# Recorded 2026-11-21 on the 2-core x86_64 CPU (jax 0.10.2) by run_one_step().
GOLDEN = {
    "grad_norm": 1.4822663068771362,
    "gspo/clip_frac_high": 0.17241379618644714,
    "gspo/clip_frac_low": 0.27586206793785095,
    "gspo/loss": -0.2504139840602875,
    "gspo/nonfinite": 0.0,
    "gspo/num_sequences": 4.0,
    "gspo/num_tokens": 29.0,
    "gspo/ratio_max": 1.0064023733139038,
    "gspo/ratio_mean": 1.0007822513580322,
    "gspo/ratio_min": 0.9959923028945923,
    "loss": 0.4437357187271118,
    "sd/nll": 6.941496849060059,
    "sd/num_selected": 1.0,
    "sd/num_tokens": 8.0,
    "skipped": 0.0,
    "visd/signal_abs_mean": 0.2206834852695465,
    "visd/signal_mean": -0.029012933373451233,
    "visd/weight_clip_frac_high": 0.3103448152542114,
    "visd/weight_clip_frac_low": 0.24137930572032928,
    "visd/weight_mean": 1.0068506002426147,
}
GOLDEN_CHECKSUM = {"params": 5082.7431640625, "teacher": 5080.291015625}


def _batch(rng, rows):
    ids = rng.integers(0, 1000, (rows, L + T)).astype(np.int32)
    mask = np.ones((rows, L + T), np.int32)
    mask[0, :5] = 0  # a left-padded prompt
    tmask = np.ones((rows, T), np.int32)
    tmask[1, 5:] = 0  # a completion that stopped early
    mask[:, L:] = tmask
    cfg = Qwen25VLConfig.preset("tiny")
    pos, src = token_layout(ids, mask, [[]] * rows, [], None, video_token_id=cfg.video_token_id,
                            image_token_id=cfg.image_token_id, merge=2, tokens_per_second=2, media_end=L)
    return RolloutBatch(ids, mask, ids[:, L:].copy(), tmask, pos, src, None)


def run_one_step():
    model = Qwen25VL.create(Qwen25VLConfig.preset("tiny"), seed=0)
    graphdef, params = nnx.split(model)
    opt, _ = make_optimizer(lr=1e-3, total_steps=10, weight_decay=0.01, grad_clip=5.0)
    state = {"params": params, "opt": opt.init(params), "teacher": jax.tree.map(jnp.copy, params),
             "ref": None, "step": jnp.zeros((), jnp.int32)}
    shardings = jax.tree.map(lambda x: x.sharding, state)
    steps = Steps(graphdef, opt, shardings, temperature=1.0, clip_low=3e-4, clip_high=4e-4,
                  signal_clip=0.2, alpha=0.1, ema_decay=0.99, signal_mode="topk", top_k=16, gamma=0.0)
    rng = np.random.default_rng(0)
    seq, sd = _batch(rng, B), _batch(rng, 2)
    logp = steps.score()(state["params"], None, None, seq, None, np.zeros((1, B), np.float32),
                         np.arange(B, dtype=np.int32)).old_logp
    # an older policy: ratios on both sides of the clip band
    old_logp = np.asarray(logp) + rng.normal(0.0, 0.01, (B, T)).astype(np.float32)
    adv = np.array([1.0, 1.0, -0.5, -0.5], np.float32)
    signal = rng.normal(0.0, 0.3, (B, T)).astype(np.float32) * seq.tmask
    fn = steps.rl_update(use_signal=True, use_sd=True)
    # all rows in one minibatch; sd row 1 is padding (index -1: in no loss); the kept row's
    # weight 1 makes the weighted NLL the plain one the values were recorded with
    scored = Scored(jnp.asarray(old_logp), jnp.asarray(signal), jnp.asarray(adv), None)
    state, m = fn(state, seq, scored, jnp.float32(0.5), np.arange(B, dtype=np.int32), sd,
                  np.array([0, -1], np.int32), np.array([1.0, 0.0], np.float32), np.bool_(False))
    state = steps.ema()(state)
    m = {k: float(v) for k, v in jax.device_get(m).items()}
    checksum = {part: float(sum(jnp.sum(jnp.abs(x.astype(jnp.float32))) for x in jax.tree.leaves(state[part])))
                for part in ("params", "teacher")}
    return m, checksum, int(state["step"])


def test_one_rl_update_matches_the_golden_values():
    m, checksum, step = run_one_step()
    assert step == 1
    assert set(GOLDEN) <= set(m), sorted(set(GOLDEN) - set(m))
    for k, want in GOLDEN.items():
        if float(want).is_integer() and ("num_" in k or k in ("skipped",)):
            assert m[k] == want, k
        else:
            assert m[k] == pytest.approx(want, rel=1e-5, abs=1e-7), (k, m[k], want)
    for part, want in GOLDEN_CHECKSUM.items():
        assert checksum[part] == pytest.approx(want, rel=1e-5), (part, checksum[part], want)
