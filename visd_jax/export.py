"""A training run's policy as a Hugging Face checkpoint directory that transformers loads.

    python -m visd_jax.export --workdir W [--step N] --out DIR [--dtype bfloat16]

Reads only the policy's arrays of the checkpoint (`training.policy.load_policy`: no
optimizer, no teacher), folds LoRA adapters into their kernels, and writes safetensors,
config.json, and the tokenizer and generation files of the checkpoint the run started from
(`model.path`); a run on the project's tiny tokenizer gets that tokenizer saved and a
generation_config.json with its stop ids.
"""
from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys

log = logging.getLogger(__name__)


def export(workdir: str, out: str, *, step: int | None = None, dtype: str | None = None) -> pathlib.Path:
    """Writes the policy of `workdir` (newest checkpoint, or `step`) to `out`; returns it."""
    from visd_jax.models.hf_io import save_hf_checkpoint
    from visd_jax.models.lora import has_lora, merge_lora
    from visd_jax.text import special_ids
    from visd_jax.training.policy import load_policy

    p = load_policy(workdir=workdir, step=step, dtype=dtype)
    if has_lora(p.model):
        merge_lora(p.model)
    out = pathlib.Path(out)
    save_hf_checkpoint(p.model, out, companions_from=p.tokenizer_dir)
    if p.tokenizer_dir is None or not (out / "tokenizer_config.json").exists():
        p.tokenizer.save_pretrained(str(out))
    if not (out / "generation_config.json").exists():
        ids = special_ids(p.tokenizer, p.tokenizer_dir)
        (out / "generation_config.json").write_text(json.dumps(
            {"eos_token_id": list(ids.stop), "pad_token_id": int(ids.pad), "_from_model_config": False}, indent=1))
    (out / "visd_jax_export.json").write_text(json.dumps({"workdir": str(workdir), "step": p.step,
                                                          "mode": p.config.mode}, indent=1))
    log.info("exported %s to %s", p.source, out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m visd_jax.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True, help="a training run's work directory")
    ap.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    ap.add_argument("--out", required=True, help="output directory (Hugging Face layout)")
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                    help="weights' dtype in the files (default: the run's)")
    a = ap.parse_args(argv)
    try:
        out = export(a.workdir, a.out, step=a.step, dtype=a.dtype)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"exported {a.workdir} to {out}: load it with transformers' from_pretrained({str(out)!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
