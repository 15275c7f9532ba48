"""Folders by record `source`: how the releases' relative media paths find their root.

Kept apart from `visd_jax.pipeline` (grain, PyAV) so the config can be validated in the
first second of a run, before any of that is imported.
"""
from __future__ import annotations

from collections.abc import Mapping

Roots = Mapping[str, str]


def parse_roots(spec) -> dict[str, str]:
    """`{"source": "dir", ...}`, or `"source=dir,source2=dir2"`, or one directory ("" key:
    every source). Empty or None: {}."""
    if not spec:
        return {}
    if isinstance(spec, Mapping):
        return {str(k): str(v) for k, v in spec.items()}
    spec = str(spec)
    if "=" not in spec:
        return {"": spec}
    out = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep or not value.strip():
            raise ValueError(f"roots {spec!r}: {part!r} is not source=directory")
        out[key.strip()] = value.strip()
    return out


def root_for(source, roots: Roots) -> str | None:
    """The root of a record's `source`: an exact key, else the longest key contained in it
    (the release tests "STR_plm" before "STR"), else the "" (any source) key."""
    if not roots:
        return None
    s = "" if source is None else str(source)
    if s in roots:
        return roots[s]
    hits = [k for k in roots if k and k in s]
    if hits:
        return roots[max(hits, key=len)]
    return roots.get("")
