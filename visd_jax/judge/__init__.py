"""Structured judge (VISD, SPEC section 6): a rollout in, a `Judgement` out, and the
privileged text block the EMA teacher sees.

`AnnotationJudge` is deterministic and offline (the default); `ModelJudge` wraps any
prompt -> text callable and falls back to `AnnotationJudge` on any failure.
"""
from visd_jax.judge.annotation import ERROR_CAUSES, VERDICTS, AnnotationJudge, Judgement
from visd_jax.judge.model import ModelJudge, parse_judgement, privileged_block, rubric_prompt

__all__ = ["AnnotationJudge", "ERROR_CAUSES", "Judgement", "ModelJudge", "VERDICTS",
           "parse_judgement", "privileged_block", "rubric_prompt"]
