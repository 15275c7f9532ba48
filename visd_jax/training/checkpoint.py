"""Checkpoints: orbax CheckpointManager over (train state pytree, JSON sidecar).

The pytree holds everything with array leaves (student, optimizer, EMA teacher, step, RNG
key data); the JSON sidecar holds what is not an array: the grain iterator state, counters
of skipped records, the config it was written with. Saves are asynchronous (training goes
on while the previous step is written), the last `keep` are kept, and `restore_latest`
is how a restarted run finds where it was. Works on local paths and gs:// alike.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath


class Checkpointer:
    def __init__(self, directory: str | os.PathLike, *, every: int, keep: int = 3, async_save: bool = True):
        if every < 1:
            raise ValueError(f"checkpoint every must be >= 1 step, got {every}")
        if keep < 1:
            raise ValueError(f"checkpoint keep must be >= 1, got {keep}")
        # orbax's tensorstore backend wants absolute paths; the default work directory of
        # the main job is relative to where it is started (URLs like gs:// are left alone)
        self.directory = epath.Path(directory if "://" in str(directory) else os.path.abspath(directory))
        self.every = every
        self._mngr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                # the interval is decided here (step % every), not by orbax, which would
                # also save the first step it sees
                save_interval_steps=1,
                enable_async_checkpointing=async_save,
                create=True,
            ),
            item_names=("state", "meta"),
            # handlers up front, so a checkpoint's contents can be listed before restoring it
            item_handlers={"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
        )

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def saved_shapes(self, step: int) -> dict[str, tuple[int, ...]]:
        """{name: shape} of every array the checkpoint at `step` holds (a flat state dict)."""
        tree = self._mngr.item_metadata(step)["state"]
        return {name: tuple(getattr(m, "shape", ())) for name, m in tree.items()}

    def save(self, step: int, state: Any, meta: Mapping[str, Any], *, force: bool = False) -> bool:
        """Saves when `step` is on the interval (or `force`); returns whether it saved."""
        if not force and step % self.every:
            return False
        return self._mngr.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta))),
            force=force,
        )

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """Restores `step` into the shapes, dtypes and shardings of `abstract_state`.

        `abstract_state` is a pytree of jax.ShapeDtypeStruct with `.sharding` (e.g. from
        `jax.eval_shape` plus the sharding rules), so each host reads only its shards.
        """
        out = self._mngr.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()),
        )
        return out.state, dict(out.meta)

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        step = self.latest_step()
        if step is None:
            return None
        state, meta = self.restore(step, abstract_state)
        return step, state, meta

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of a live pytree: the restore target for it."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree
    )
