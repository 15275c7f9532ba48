"""Stage 2: the VP-Selector model (paper section 3.3, training).

A Qwen2.5-VL (a preset or any checkpoint, usually with LoRA: `model.lora`) reads the raw
video and `labels.instruction(question)` and is trained with token cross-entropy to answer
the label's name (then end of turn). `predict` reads the distribution of the answer's first
token over the five kinds' first tokens (distinct in any tokenizer we accept): a probability
per kind. Everything runs through a `Trainer` built in `sft` mode, so the selector gets the
project's mesh, sharding, LoRA, optimizer and checkpoints (resumable) for free.
"""
from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from visd_jax.pipeline import RecordError, make_example, pad_batch
from visd_jax.prompt_kinds import KINDS
from visd_jax.training import inputs
from visd_jax.training.batch import build_batch
from visd_jax.training.step import completion_hidden
from visd_jax.vp_selector.labels import instruction

log = logging.getLogger(__name__)
TARGET_BUCKETS = (8, 16)


def label_ids(tokenizer) -> dict[str, list[int]]:
    """Token ids of each kind's name; their first tokens must differ (the prediction reads
    them), or it is a start-up error naming the clash."""
    ids = {k: list(tokenizer(k, add_special_tokens=False)["input_ids"]) for k in KINDS}
    firsts = [v[0] for v in ids.values()]
    if len(set(firsts)) != len(firsts):
        raise ValueError(f"the tokenizer gives kinds the same first token: {ids}; the selector cannot tell them apart")
    return ids


def selector_item(source, index: int) -> dict:
    """Source item `index` with its question wrapped in the selector's instruction."""
    item = dict(source[index])
    if item.get("record") is not None:
        item["record"] = {**item["record"], "question": instruction(item["record"]["question"])}
    return item


def build(t, indices, kinds=None):
    """(RolloutBatch, ids of the rows built): `indices`' examples (raw video, the selector
    instruction) with the kinds' names as targets, or (kinds None) the first token only.
    Records that cannot be built are left out (logged)."""
    examples, ids, labels = [], [], []
    for j, i in enumerate(indices):
        try:
            ex = make_example(selector_item(t.source, i), t.example_cfg)
        except RecordError as e:
            log.warning("selector: record %s skipped: %s", e.record_id, e.reason)
            continue
        examples.append(ex)
        ids.append(ex["meta"]["id"])
        labels.append(None if kinds is None else kinds[j])
    if not examples:
        return None, []
    n = len(indices)  # static row count: pad with copies whose targets are masked out
    pb = pad_batch(examples + [examples[0]] * (n - len(examples)), batch_size=n, buckets=t.buckets,
                   max_frames=t.example_cfg.frame_slots, pad_id=t.pad_id)
    names = label_ids(t.tokenizer)
    tgt = [names[k] + [t.eos_id] if k is not None else names[KINDS[0]][:1] for k in labels]
    width = inputs.bucket(max(map(len, tgt)), TARGET_BUCKETS) if kinds is not None else 1
    tok = np.full((n, width), t.pad_id, np.int32)
    tmask = np.zeros((n, width), np.int32)
    for r, x in enumerate(tgt):
        tok[r, :len(x)], tmask[r, :len(x)] = x, 1
    rows = list(range(n))
    prompt_ids = inputs.prompt_ids_of(pb, rows)
    media = [inputs.blocks_of_row(pb, b) for b in rows]
    width = inputs.bucket(max(map(len, prompt_ids)), t.sft_prompt_buckets)
    return build_batch(t.ctx, prompt_ids, tok, tmask, rows, media, prompt_len=width), ids


def train(t, rows: list[dict], *, batch_size: int, seed: int, log_every: int = 10) -> list[dict]:
    """`t.sft_steps` cross-entropy steps on `rows` (dataset rows: index, label), resuming
    at `t.start`; each step's examples are drawn from (seed, step), so a resumed run sees
    the same batches. Checkpoints as the trainer's config says; the last one always."""
    if not rows:
        raise ValueError("the selector has no training rows (every example is held out or unusable)")
    out = []
    with jax.set_mesh(t.mesh):
        fn = t.steps.sft_update(t.sft_opt)
        for step in range(t.start, t.sft_steps):
            pick = np.random.default_rng([seed, step]).choice(len(rows), size=batch_size, replace=len(rows) < batch_size)
            b, _ = build(t, [rows[i]["index"] for i in pick], [rows[i]["label"] for i in pick])
            t.state, m = fn(t.state, t._place(b))
            m = {k: float(v) for k, v in jax.device_get(m).items()}
            out.append({"step": step + 1, **m})
            if (step + 1) % log_every == 0 or step + 1 == t.sft_steps:
                log.info("selector step %d / %d: loss %.4f", step + 1, t.sft_steps, m["loss"])
            t._save(step + 1, force=step + 1 == t.sft_steps)
    return out


def predict(t, indices, *, batch_size: int) -> dict[str, dict[str, float]]:
    """{id: {kind: probability}} for the examples at `indices` (unbuildable ones left out)."""
    first = jnp.asarray([label_ids(t.tokenizer)[k][0] for k in KINDS], jnp.int32)
    graphdef = t.graphdef

    @jax.jit
    def probs(params, b):
        model = nnx.merge(graphdef, params)
        h = completion_hidden(model, b)[:, 0].astype(jnp.float32)  # predicts the first answer token
        logits = h @ jnp.take(model.unembed, first, axis=1).astype(jnp.float32)
        return jax.nn.softmax(logits, axis=-1)

    out = {}
    indices = list(indices)
    with jax.set_mesh(t.mesh):
        for c in range(0, len(indices), batch_size):
            chunk = indices[c:c + batch_size]
            chunk = chunk + [chunk[-1]] * (batch_size - len(chunk))  # one shape for every call
            b, ids = build(t, chunk)
            if b is None:
                continue
            p = np.asarray(jax.device_get(probs(t.state["params"], t._place(b))))
            for r, rid in enumerate(ids):
                out[rid] = {k: float(p[r, j]) for j, k in enumerate(KINDS)}
    return out


CONFIG_FILE = "selector_config.json"  # in a selector run's directory: the config to rebuild it


def load(selector_dir):
    """The trained selector of a `python -m experiments.vp_selector` run directory, as an
    `sft`-mode Trainer restored from its newest checkpoint."""
    from etils import epath

    from visd_jax.training.policy import config_from_json
    from visd_jax.training.trainer import Trainer

    path = epath.Path(selector_dir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{selector_dir} is no VP-Selector run: it has no {CONFIG_FILE}")
    cfg = config_from_json(path.read_text())
    t = Trainer(cfg)
    if t.start < t.sft_steps:
        raise FileNotFoundError(f"the selector in {cfg.workdir} is not trained (checkpoint at step {t.start} of "
                                f"{t.sft_steps}): finish `python -m experiments.vp_selector` first")
    return t


def precompute(selector_dir, source, out_path, *, batch_size: int = 8) -> dict[str, str]:
    """Predictions of the selector in `selector_dir` for every example of `source` (the RL
    run's data), written to `out_path` once (the cache RL reads, frozen); {id: kind}."""
    from visd_jax.vp_selector.labels import read_predictions, write_predictions

    t = load(selector_dir)
    t.source = source  # the RL run's records, read with the selector's own example settings
    preds = predict(t, range(len(source)), batch_size=batch_size)  # every process: the mesh is global
    if jax.process_index() == 0:  # one writer, then everyone reads the same file
        write_predictions(out_path, preds, meta={"selector": str(selector_dir)})
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("visd_jax.vp_selector.precompute")
    t.ckpt.close()
    return read_predictions(out_path)
