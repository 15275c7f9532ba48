"""Answer rewards `ans_acc`, `ans_tiou`, `ans_viou` (SPEC section 3, items 1-3).

Reference: VisionCoach release `reward_func.py` (`ans_acc_reward`, `ans_tiou_reward`,
`ans_viou_reward`), identical to Open-o3 Video's. Each reward is a function of
(completion, example, progress) returning a float in [0, 1]; `completion` may be a
`Completion` or raw text, `example` an STGR dict or a `Gold`.

- ans_acc. MCQ: 1 if the stripped answer is X, X., (X) or [X] for the gold letter X.
  Temporal MCQ: the same test on the text between the first `Correct Option:` and the next
  one (or the end). Free-form tasks: mean of ROUGE-1/2/L F-measures with Porter stemming,
  computed by the `rouge-score` package, clipped to [0, 1]. Temporal QA and visual QA: 0.
- ans_tiou (temporal QA and temporal MCQ): 1-D IoU of the first
  `<t>S</t>s to <t>E</t>s` in the answer with the gold span; 0 if absent or E < S.
- ans_viou (visual QA): IoU of the first answer box with the gold box (model pixels).

Differences from the reference, all on inputs a trained model does not produce:
- ROUGE sees at most `RewardConfig.rouge_max_chars` (4096) characters of the answer. The
  reference scores the whole answer, whose LCS costs O(len x gold) in pure Python, i.e.
  seconds on a megabyte answer; a 768-token completion is about 3 KB, so the cap never
  binds in training.
- Non-finite values (a 400-digit time parses to inf) give 0; the reference returns NaN.
"""
from __future__ import annotations

import functools

from nltk.stem import porter
from rouge_score import rouge_scorer
from rouge_score import tokenize as rouge_tokenize

from visd_jax.rewards import geometry
from visd_jax.rewards.config import DEFAULT, RewardConfig
from visd_jax.rewards.gold import FREE_FORM_TASKS, TEMPORAL_TASKS, Gold, gold_from_example
from visd_jax.rewards.parse import Completion, parse


class _MemoStemmer:
    """The Porter stemmer rouge-score uses, memoised: a group repeats most words."""

    def __init__(self):
        self._stem = functools.lru_cache(maxsize=1 << 16)(porter.PorterStemmer().stem)

    def stem(self, word: str) -> str:
        return self._stem(word)


class _MemoTokenizer:
    """rouge-score's own `tokenize` (lowercase, non-alphanumerics to spaces, stem words of
    more than 3 letters), with the stemmer memoised and the gold text's tokens cached."""

    def __init__(self):
        self._stemmer = _MemoStemmer()
        self.tokenize = functools.lru_cache(maxsize=4096)(self._tokenize)

    def _tokenize(self, text: str) -> list[str]:
        return rouge_tokenize.tokenize(text, self._stemmer)


_TOKENIZER = _MemoTokenizer()
_SCORER = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_TOKENIZER)


def rouge_tokens(text: str) -> list[str]:
    """Tokens as rouge-score sees them (lowercase alphanumeric runs, Porter-stemmed)."""
    return _TOKENIZER.tokenize(text)


def rouge_mean(reference: str, prediction: str) -> float:
    """Mean of ROUGE-1, ROUGE-2, ROUGE-L F-measures (stemmed), clipped to [0, 1]."""
    s = _SCORER.score(reference, prediction)
    value = (s["rouge1"].fmeasure + s["rouge2"].fmeasure + s["rougeL"].fmeasure) / 3
    return max(0.0, min(1.0, value))


def _inputs(completion, example) -> tuple[Completion, Gold]:
    c = completion if isinstance(completion, Completion) else parse(completion)
    return c, gold_from_example(example)


def letter_matches(choice: str, letter: str) -> bool:
    return choice.strip() in (letter, letter + ".", f"({letter})", f"[{letter}]")


def ans_acc(completion, example, progress: float = 0.0, *,
            config: RewardConfig = DEFAULT) -> float:
    del progress
    c, g = _inputs(completion, example)
    if g.task == "General video QA MCQ":
        return float(letter_matches(c.answer, g.letter))
    if g.task == "temporal QA (MCQ)":
        return float(c.chosen_option is not None and letter_matches(c.chosen_option, g.letter))
    if g.task in FREE_FORM_TASKS:
        return rouge_mean(g.answer, c.answer[:config.rouge_max_chars])
    return 0.0


def ans_tiou(completion, example, progress: float = 0.0, *,
             config: RewardConfig = DEFAULT) -> float:
    del progress, config
    c, g = _inputs(completion, example)
    if g.task not in TEMPORAL_TASKS or c.answer_span is None:
        return 0.0
    start, end = c.answer_span
    if end < start:
        return 0.0
    return geometry.interval_iou(g.span, c.answer_span)


def ans_viou(completion, example, progress: float = 0.0, *,
             config: RewardConfig = DEFAULT) -> float:
    del progress, config
    c, g = _inputs(completion, example)
    if g.task != "visual QA":
        return 0.0
    return geometry.box_iou(g.vqa_box, c.answer_box)
