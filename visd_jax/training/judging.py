"""The trainer's judge: `AnnotationJudge` (default) or `ModelJudge` over a Qwen2.5-VL model.

`config.visd.judge = "model"` grades every rollout with a model reading the rubric prompt
(`visd_jax.judge.rubric_prompt`), text only, greedy: the released VISD trainer does this
with an external text LLM. `config.visd.judge_path` names a Hugging Face checkpoint
directory for the judge (loaded once, onto the run's mesh); empty means the policy being
trained judges itself with its current weights. A reply that is not the strict JSON
Judgement falls back to the annotation judge, per rollout, and is counted
(`judge/fallback_frac`): a judge too small to follow the rubric degrades to the default
rather than feeding the teacher garbage.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from visd_jax.judge import AnnotationJudge, ModelJudge
from visd_jax.parallel import host_array
from visd_jax.sampling import Prompts, generate
from visd_jax.training import inputs
from visd_jax.training.rollouts import decode

SYSTEM = "You are a strict, careful grader. Reply with JSON only."


def batch_generator(model_of: Callable[[], object], tokenizer, *, max_new_tokens: int, max_prompt_tokens: int,
                    buckets, pad_id: int, stop_ids, system: str = SYSTEM) -> Callable[[list[str]], list[str]]:
    """prompts -> greedy replies of the model `model_of()` returns (called per batch, so a
    self-judging policy uses its current weights), each prompt in the judge's chat format."""

    special = frozenset(int(i) for i in tokenizer.all_special_ids)

    def run(prompts: list[str]) -> list[str]:
        ids = []
        for p in prompts:
            text = tokenizer.apply_chat_template([{"role": "system", "content": system},
                                                  {"role": "user", "content": p}],
                                                 tokenize=False, add_generation_prompt=True)
            row = np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"], np.int32)
            if len(row) > max_prompt_tokens:
                # keep the instruction at the end; a cut head is still a graded rollout
                row = row[-max_prompt_tokens:]
            ids.append(row)
        tok, mask = inputs.left_pad(ids, inputs.bucket(max(map(len, ids)), buckets), pad_id)
        s = generate(model_of(), Prompts(tok, mask, None, None, None), key=jax.random.key(0), num_samples=1,
                     max_new_tokens=max_new_tokens, temperature=0.0, stop_ids=stop_ids, pad_id=pad_id)
        return decode(tokenizer, host_array(s.tokens), host_array(s.mask), special)

    return run


class TrainerJudge:
    """What `rollouts.teacher_seq` calls: `judge.many(examples, texts)` plus counters."""

    def __init__(self, judge, generate_many=None):
        self.judge, self.generate_many = judge, generate_many

    def many(self, examples, texts):
        if isinstance(self.judge, ModelJudge):
            return self.judge.many(examples, texts, generate_many=self.generate_many)
        return [self.judge(e, t) for e, t in zip(examples, texts)]

    def stats(self) -> dict:
        if not isinstance(self.judge, ModelJudge) or not self.judge.calls:
            return {}
        return {"judge/fallback_frac": self.judge.fallbacks / self.judge.calls}

    def reset(self):
        if isinstance(self.judge, ModelJudge):
            self.judge.calls = self.judge.fallbacks = 0


def make_judge(cfg, *, policy_model_of, policy_tokenizer, mesh, pad_id: int, stop_ids) -> TrainerJudge:
    v = cfg.visd
    if v.judge == "annotation":
        return TrainerJudge(AnnotationJudge())
    if v.judge_path:
        from visd_jax.models.hf_io import load_hf_checkpoint
        from visd_jax.text import load_tokenizer, special_ids

        judge_model = load_hf_checkpoint(v.judge_path, mesh=mesh)
        tokenizer = load_tokenizer(v.judge_path)
        model_of = lambda: judge_model  # noqa: E731
        ids = special_ids(tokenizer, v.judge_path)
        pad, stops = ids.pad, ids.stop
    else:
        model_of, tokenizer, pad, stops = policy_model_of, policy_tokenizer, pad_id, tuple(stop_ids)
    budget = int(v.judge_max_prompt_tokens)
    buckets = tuple(b for b in (256, 512, 1024, 2048, 4096) if b < budget) + (budget,)
    gen = batch_generator(model_of, tokenizer, max_new_tokens=int(v.judge_max_new_tokens),
                          max_prompt_tokens=budget, buckets=buckets, pad_id=pad, stop_ids=stops)
    return TrainerJudge(ModelJudge(lambda p: gen([p])[0]), generate_many=gen)
