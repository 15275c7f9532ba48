"""Host side of an RL step: rollouts, rewards, hard-sample coaching, judge + teacher inputs.

Everything here is NumPy and Python between jitted calls; the model only runs inside
`sampling.generate` and the `Steps` functions.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from visd_jax import rewards as rw
from visd_jax.judge import AnnotationJudge, privileged_block
from visd_jax.parallel import host_array
from visd_jax.sampling import generate
from visd_jax.training import inputs
from visd_jax.training.step import Seq

ANSWER_REWARDS = ("ans_acc", "ans_tiou", "ans_viou")


@dataclasses.dataclass
class Rollouts:
    """G rollouts of each of N prompts, rows ordered b * G + g."""

    prompt_tok: np.ndarray  # [N*G, L] left-padded (each prompt repeated G times)
    prompt_mask: np.ndarray
    tokens: np.ndarray  # [N*G, T]
    mask: np.ndarray  # [N*G, T]
    texts: list[str]
    scores: dict[str, np.ndarray]  # reward name -> [N, G]; "total" included
    videos: inputs.Videos  # for the N*G rows
    rows: list[int]  # batch row of each of the N prompts

    @property
    def answer(self) -> np.ndarray:
        return sum(self.scores[k] for k in ANSWER_REWARDS)

    def seq(self) -> Seq:
        ids, mask = inputs.sequences(self.prompt_tok, self.prompt_mask, self.tokens, self.mask)
        v = self.videos
        return Seq(ids, mask, self.tokens.astype(np.int32), self.mask.astype(np.int32), v.pixels, v.seconds, v.grid)


def decode(tokenizer, tokens: np.ndarray, mask: np.ndarray, special: frozenset[int]) -> list[str]:
    """Completion text of each row: the masked tokens minus special ones (the stop token)."""
    out = []
    for row, m in zip(tokens, mask):
        ids = [int(t) for t, k in zip(row, m) if k and int(t) not in special]
        out.append(tokenizer.decode(ids, skip_special_tokens=False))
    return out


def rollout(model, batch: dict, rows: Sequence[int], *, key, num_samples: int, max_new_tokens: int,
            temperature: float, top_p: float, top_k: int | None, stop_ids, pad_id: int, token_buckets,
            tokenizer, special, progress: float, reward_weights=None, banned_ids=()) -> Rollouts:
    """Samples G completions for each of `rows` of `batch` and scores them."""
    ids = inputs.prompt_ids_of(batch, rows)
    length = inputs.bucket(max(len(i) for i in ids), token_buckets)
    prompts = inputs.sampler_prompts(batch, rows, length=length, pad_id=pad_id, ids=ids)
    s = generate(model, prompts, key=key, num_samples=num_samples, max_new_tokens=max_new_tokens,
                 temperature=temperature, top_p=top_p, top_k=top_k, stop_ids=stop_ids, pad_id=pad_id,
                 banned_ids=banned_ids)
    tokens, mask = host_array(s.tokens), host_array(s.mask)  # rows may live on other processes
    texts = decode(tokenizer, tokens, mask, special)
    g = num_samples
    per_prompt = [rw.score_group(texts[i * g:(i + 1) * g], batch["meta"][b], progress=progress,
                                 weights=reward_weights) for i, b in enumerate(rows)]
    scores = {k: np.stack([p[k] for p in per_prompt]) for k in per_prompt[0]}
    rep_rows = [b for b in rows for _ in range(g)]
    return Rollouts(np.repeat(prompts.input_ids, g, axis=0), np.repeat(prompts.attention_mask, g, axis=0),
                    tokens, mask, texts, scores, inputs.videos_for_rows(batch, rep_rows), list(rows))


def teacher_seq(ro: Rollouts, batch: dict, *, tokenizer, marker: int, pad_id: int, token_buckets,
                judge=None) -> tuple[Seq, dict]:
    """The EMA teacher's sequences: each rollout's prompt with the judge's privileged block
    inserted at the end of the user turn, followed by the same completion tokens."""
    judge = judge or AnnotationJudge()
    g = len(ro.texts) // len(ro.rows)
    metas = [batch["meta"][ro.rows[r // g]] for r in range(len(ro.texts))]
    # one batched call where the judge has one (a model judge), else rollout by rollout
    judged = judge.many(metas, ro.texts) if hasattr(judge, "many") else [judge(m, t) for m, t in zip(metas, ro.texts)]
    ids, verdicts = [], {}
    for r, j in enumerate(judged):
        b = ro.rows[r // g]
        meta = metas[r]
        verdicts[j.verdict] = verdicts.get(j.verdict, 0) + 1
        block = np.asarray(tokenizer("\n\n" + privileged_block(meta, j), add_special_tokens=False)["input_ids"],
                           np.int32)
        base = batch["input_ids"][b, : int(batch["attention_mask"][b].sum())]
        ids.append(inputs.insert_before_last(base, marker, block))
    length = inputs.bucket(max(len(i) for i in ids), token_buckets)
    tok, mask = inputs.left_pad(ids, length, pad_id)
    sid, smask = inputs.sequences(tok, mask, ro.tokens, ro.mask)
    v = ro.videos
    total = max(1, len(ro.texts))
    stats = {f"judge/{k}": n / total for k, n in sorted(verdicts.items())}
    return Seq(sid, smask, ro.tokens.astype(np.int32), ro.mask.astype(np.int32), v.pixels, v.seconds, v.grid), stats


def subset(seq: Seq, rows: np.ndarray, videos_of: Callable[[np.ndarray], inputs.Videos]) -> Seq:
    """Rows of a sequence batch, with their videos rebuilt in the same order."""
    v = videos_of(rows)
    return Seq(seq.ids[rows], seq.mask[rows], seq.targets[rows], seq.tmask[rows], v.pixels, v.seconds, v.grid)
