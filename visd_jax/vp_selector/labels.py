"""The VP-Selector's text side and its prediction files (JAX-free: the config check and
the RL selector read these before JAX is imported).

The selector reads the video and an instruction built around the question, and answers
with the name of one visual prompt (paper section 3.3: "choose one method ... generate the
corresponding prompt label as a single-token/short-string response"). Its predictions are
cached per example in a JSON file, like the release's cache; `read_predictions` reads ours
and the release's format (`{id: 0 | 1}`, 0 raw, 1 darken).
"""
from __future__ import annotations

import json

from visd_jax.prompt_kinds import KINDS

FORMAT = "visd_jax.vp_selector.predictions/1"
RELEASE_KINDS = ("raw", "darken")  # the release's binary classifier: 0 raw, 1 darken


def instruction(question: str) -> str:
    """The selector's user text: which visual prompt would help a model answer `question`."""
    return ("Which visual prompt on the key frames would best help a model answer the question below? "
            f"Choose one method from: {', '.join(KINDS)}. Answer with the method's name only.\n"
            f"Question: {question}")


def write_predictions(path, predictions: dict[str, dict[str, float]], *, meta: dict | None = None) -> None:
    """{id: {kind: probability}} -> the cache file (the argmax kind kept alongside)."""
    rows = {}
    for rid, probs in predictions.items():
        unknown = sorted(set(probs) - set(KINDS))
        if unknown:
            raise ValueError(f"prediction for {rid!r} names unknown kinds {unknown}; known: {KINDS}")
        best = max(KINDS, key=lambda k: (probs.get(k, 0.0), -KINDS.index(k)))
        rows[rid] = {"kind": best, "probs": {k: float(probs.get(k, 0.0)) for k in KINDS}}
    with open(path, "w") as f:
        json.dump({"format": FORMAT, "kinds": list(KINDS), **(meta or {}), "predictions": rows}, f)


def read_predictions(path) -> dict[str, str]:
    """{id: kind} from a prediction cache: ours (`write_predictions`), the release's
    `{id: 0 | 1}` (0 raw, 1 darken), or a plain `{id: "kind"}`. An unknown kind, or a value
    of another type, is an error naming the example and the value."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read the selector predictions {path}: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: selector predictions must be a JSON object, got {type(data).__name__}")
    rows = data["predictions"] if data.get("format") == FORMAT else data
    out = {}
    for rid, v in rows.items():
        if isinstance(v, dict):
            v = v.get("kind")
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise ValueError(f"{path}: prediction for {rid!r} is {v!r}: expected a kind name or the release's 0/1")
        if isinstance(v, int):
            if v not in (0, 1):
                raise ValueError(f"{path}: prediction for {rid!r} is {v}: the release's cache holds 0 (raw) "
                                 f"or 1 (darken)")
            v = RELEASE_KINDS[v]
        if v not in KINDS:
            raise ValueError(f"{path}: prediction for {rid!r} is the unknown kind {v!r}; known: {KINDS}")
        out[str(rid)] = v
    return out
