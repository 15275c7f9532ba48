"""Host side of an RL step: rollouts through a `Sampler`, rewards, judge + teacher inputs.

Everything here is NumPy and Python between jitted calls; the model only runs inside the
sampler and the `Steps` programs. The `Sampler` seam is what lets the orchestration
(coaching, candidate choice, the minibatch split, the teacher rows) be tested with canned
completions in milliseconds (`CannedSampler`), without compiling a model.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from visd_jax import rewards as rw
from visd_jax.judge import AnnotationJudge, privileged_block
from visd_jax.models.canvas import Block
from visd_jax.parallel import host_array
from visd_jax.sampling import Prompts, generate
from visd_jax.training import inputs
from visd_jax.training.batch import RolloutBatch, RunContext, build_batch, prompt_batch
from visd_jax.training.programs import Programs, signature

ANSWER_REWARDS = ("ans_acc", "ans_tiou", "ans_viou")


class Sampler(Protocol):
    def __call__(self, prompts: Prompts, *, key, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens [N*G, T], mask [N*G, T]) on the host, rows ordered n * G + g."""


@dataclasses.dataclass
class ModelSampler:
    """`sampling.generate` on the current policy (`params()` gives it), counted as program "sample"."""

    model: Callable[[], object]
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int | None
    stop_ids: tuple[int, ...]
    pad_id: int
    banned_ids: tuple[int, ...]
    programs: Programs

    def __call__(self, prompts: Prompts, *, key, num_samples: int):
        self.programs.track("sample", num_samples, (prompts.input_ids, prompts.media, prompts.src))
        s = generate(self.model(), prompts, key=key, num_samples=num_samples, max_new_tokens=self.max_new_tokens,
                     temperature=self.temperature, top_p=self.top_p, top_k=self.top_k, stop_ids=self.stop_ids,
                     pad_id=self.pad_id, banned_ids=self.banned_ids)
        return host_array(s.tokens), host_array(s.mask)  # rows may live on other processes


@dataclasses.dataclass
class CannedSampler:
    """Completions from `texts(meta_of_prompt, prompt_ids) -> G texts`, tokenized: the trainer's
    orchestration without a model. `metas` are looked up by the prompt's position in the call."""

    tokenizer: object
    texts: Callable[[int, np.ndarray], Sequence[str]]
    stop_id: int
    pad_id: int
    length: int = 64
    calls: list = dataclasses.field(default_factory=list)

    def __call__(self, prompts: Prompts, *, key, num_samples: int):
        self.calls.append(signature((prompts.input_ids, prompts.media)))
        rows = []
        for n, ids in enumerate(np.asarray(prompts.input_ids)):
            outs = list(self.texts(n, ids))
            if len(outs) != num_samples:
                raise ValueError(f"canned sampler gave {len(outs)} completions for {num_samples} samples")
            rows += [self.tokenizer(t, add_special_tokens=False)["input_ids"][: self.length - 1] + [self.stop_id]
                     for t in outs]
        tokens = np.full((len(rows), self.length), self.pad_id, np.int32)
        mask = np.zeros((len(rows), self.length), np.int32)
        for i, r in enumerate(rows):
            tokens[i, :len(r)], mask[i, :len(r)] = r, 1
        return tokens, mask


@dataclasses.dataclass
class Rollouts:
    """G rollouts of each of N prompts, rows ordered n * G + g."""

    prompt_ids: list[np.ndarray]  # [N] each prompt's ids (no padding)
    media: list[list[Block]]  # [N] each prompt's vision blocks
    tokens: np.ndarray  # [N*G, T]
    mask: np.ndarray  # [N*G, T]
    texts: list[str]
    scores: dict[str, np.ndarray]  # reward name -> [N, G]; "total" included
    rows: list[int]  # batch row of each of the N prompts

    @property
    def group(self) -> int:
        return len(self.texts) // len(self.rows)

    @property
    def answer(self) -> np.ndarray:
        return sum(self.scores[k] for k in ANSWER_REWARDS)

    def batch(self, ctx: RunContext, prompt_ids: Sequence[np.ndarray] | None = None,
              packed=None) -> RolloutBatch:
        """The learner's batch: every rollout after its prompt (or after `prompt_ids[r]`, one
        per rollout: the teacher's prompts), each prompt's media once."""
        g = self.group
        ids = prompt_ids if prompt_ids is not None else [p for p in self.prompt_ids for _ in range(g)]
        return build_batch(ctx, ids, self.tokens, self.mask, [r // g for r in range(len(self.texts))], self.media,
                           packed=packed)


@dataclasses.dataclass
class Collected:
    """What `collect` hands `learn`: the rollout batch, the teacher's rows (VISD, while the
    teacher is on), the self-distillation rows (coach modes, when any were kept)."""

    batch: RolloutBatch
    teacher: RolloutBatch | None
    sd: object | None  # coach.CoachResult holding a batch (rows + selected)
    mix: float
    raw: Rollouts
    meta: dict  # the first prompt's record (samples.jsonl)
    stats: dict


def decode(tokenizer, tokens: np.ndarray, mask: np.ndarray, special: frozenset[int]) -> list[str]:
    """Completion text of each row: the masked tokens minus special ones (the stop token)."""
    out = []
    for row, m in zip(tokens, mask):
        ids = [int(t) for t, k in zip(row, m) if k and int(t) not in special]
        out.append(tokenizer.decode(ids, skip_special_tokens=False))
    return out


def rollout(sampler: Sampler, batch: dict, rows: Sequence[int], *, ctx: RunContext, key, num_samples: int,
            progress: float, reward_weights=None) -> Rollouts:
    """Samples G completions for each of `rows` of `batch` and scores them."""
    ids = inputs.prompt_ids_of(batch, rows)
    media = [inputs.blocks_of_row(batch, b) for b in rows]
    p = prompt_batch(ctx, ids, media)
    tokens, mask = sampler(Prompts(p.ids, p.mask, media=p.media, positions=p.positions, src=p.src), key=key,
                           num_samples=num_samples)
    special = frozenset(int(i) for i in ctx.tokenizer.all_special_ids)
    texts = decode(ctx.tokenizer, tokens, mask, special)
    g = num_samples
    per_prompt = [rw.score_group(texts[i * g:(i + 1) * g], batch["meta"][b], progress=progress,
                                 weights=reward_weights) for i, b in enumerate(rows)]
    scores = {k: np.stack([q[k] for q in per_prompt]) for k in per_prompt[0]}
    return Rollouts(ids, media, tokens, mask, texts, scores, list(rows))


def teacher_batch(ro: Rollouts, batch: dict, *, ctx: RunContext, judge=None,
                  packed=None) -> tuple[RolloutBatch, dict]:
    """The EMA teacher's rows: each rollout's prompt with the judge's privileged block
    inserted at the end of the user turn, followed by the same completion tokens."""
    judge = judge or AnnotationJudge()
    g = ro.group
    metas = [batch["meta"][ro.rows[r // g]] for r in range(len(ro.texts))]
    # one batched call where the judge has one (a model judge), else rollout by rollout
    judged = judge.many(metas, ro.texts) if hasattr(judge, "many") else [judge(m, t) for m, t in zip(metas, ro.texts)]
    ids, verdicts = [], {}
    for r, j in enumerate(judged):
        verdicts[j.verdict] = verdicts.get(j.verdict, 0) + 1
        block = np.asarray(ctx.tokenizer("\n\n" + privileged_block(metas[r], j), add_special_tokens=False)["input_ids"],
                           np.int32)
        ids.append(inputs.insert_before_last(ro.prompt_ids[r // g], ctx.special.im_end, block))
    total = max(1, len(ro.texts))
    return ro.batch(ctx, ids, packed), {f"judge/{k}": n / total for k, n in sorted(verdicts.items())}
