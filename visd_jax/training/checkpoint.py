"""Checkpoints: orbax CheckpointManager over (train state pytree, JSON sidecar).

The pytree holds everything with array leaves (student, optimizer, EMA teacher, step, RNG
key data); the JSON sidecar holds what is not an array: the grain iterator state, counters
of skipped records, the config it was written with. Saves are asynchronous (training goes
on while the previous step is written), the last `keep` are kept, and `restore_latest`
is how a restarted run finds where it was. Works on local paths and gs:// alike.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

log = logging.getLogger(__name__)


class CheckpointMismatch(ValueError):
    """An intact checkpoint written by another model, optimizer or layout: never skipped."""


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

    def meta(self, step: int) -> dict:
        """The JSON sidecar of `step` alone (no array is read): iterator state, config."""
        return dict(self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta)

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        step = self.latest_step()
        if step is None:
            return None
        state, meta = self.restore(step, abstract_state)
        return step, state, meta

    def set_aside(self, steps) -> list:
        """Renames damaged checkpoints to `STEP.damaged[-k]` (kept for inspection, never
        deleted) so those steps can be written again. Process 0 renames; every process then
        re-reads the directory. On gs:// a rename copies the checkpoint."""
        moved = []
        if jax.process_index() == 0:
            for step in steps:
                src, dst, k = self.directory / str(step), self.directory / f"{step}.damaged", 1
                while dst.exists():
                    dst, k = self.directory / f"{step}.damaged-{k}", k + 1
                src.rename(dst)
                moved.append(dst)
                log.warning("damaged checkpoint %s moved to %s", src, dst)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("visd_jax.checkpoint.set_aside")
        self._mngr.reload()
        return moved

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()


# parts of the train state that copy the policy's arrays (same names after the first key)
MIRRORS = ("['teacher']", "['ref']")


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of a live pytree: the restore target for it."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree
    )


def _fit(ckpt: Checkpointer, step: int, live: dict):
    """(abstract target, names missing from the checkpoint, extra names) for restoring `step`
    into the flat live state; CheckpointMismatch unless only the policy's copies (the EMA
    teacher, the frozen reference) differ."""
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), live)
    saved = ckpt.saved_shapes(step)
    missing, extra = sorted(set(abstract) - set(saved)), sorted(set(saved) - set(abstract))
    teacher = lambda names: all(n.startswith(MIRRORS) for n in names)  # noqa: E731
    wrong = [f"{n} {saved[n]} (this run: {abstract[n].shape})" for n in sorted(set(saved) & set(abstract))
             if tuple(saved[n]) != tuple(abstract[n].shape)]
    if wrong or not teacher(missing) or not teacher(extra):
        raise CheckpointMismatch(
            f"the checkpoint at step {step} in {ckpt.directory} does not fit this run (another model, "
            f"optimizer or layer layout wrote it; give a fresh config.workdir): "
            + "; ".join(x for x in (f"{len(wrong)} arrays of another shape, e.g. {wrong[:2]}" if wrong else "",
                                    f"missing {len(missing)}, e.g. {missing[:2]}" if missing else "",
                                    f"unexpected {len(extra)}, e.g. {extra[:2]}" if extra else "") if x))
    return abstract, missing, extra


def restore_newest(ckpt: Checkpointer, live: dict, *, below: int | None = None):
    """(step, flat state, meta, teacher names that were missing, damaged newer steps) of the
    newest checkpoint (before `below`) that restores. A newer one that fails twice (a
    truncated array file or metadata; the retry lets a passing storage error by) is logged
    with what was wrong and skipped; the caller sets the damaged ones aside once it has
    accepted the restore. Every process must restore the same step: on several processes
    a disagreement is an error, never a silently mixed state. Only the policy's copies (EMA
    teacher, frozen reference) may differ from the live state: a run switching into a VISD
    mode starts its teacher from the restored policy (SPEC 6); one switching out ignores
    the saved teacher; likewise for the reference KL's reference."""
    policy = lambda n: "['params']" + n[n.index("]") + 1:]  # noqa: E731  the array it mirrors
    damaged, damaged_steps = [], []
    for step in sorted((s for s in ckpt.all_steps() if below is None or s < below), reverse=True):
        try:
            abstract, missing, extra = _fit(ckpt, step, live)
            for n in missing:
                del abstract[n]
            for n in extra:  # read (then dropped) in the placement of the params they mirror
                abstract[n] = abstract[policy(n)]
            try:
                flat, meta = ckpt.restore(step, abstract)
            except Exception:  # noqa: BLE001  once more: a passing storage error is no damage
                flat, meta = ckpt.restore(step, abstract)
        except CheckpointMismatch:
            raise
        except Exception as e:  # noqa: BLE001  whatever a damaged file makes orbax raise
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            log.warning("checkpoint %s/%d is damaged, trying an older one: %s", ckpt.directory, step, why)
            damaged.append(f"step {step}: {why}")
            damaged_steps.append(step)
            continue
        for n in extra:
            del flat[n]
        # a missing copy holds the policy's arrays until the caller copies the policy
        flat.update({n: flat[policy(n)] for n in missing})
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            first = int(multihost_utils.broadcast_one_to_all(np.int32(step)))
            if first != step:
                raise RuntimeError(f"process {jax.process_index()} restored step {step} of {ckpt.directory} but "
                                   f"process 0 restored {first}: a checkpoint is damaged for some hosts only")
        return step, flat, meta, missing, damaged_steps
    raise RuntimeError(f"no checkpoint in {ckpt.directory} restores; move the directory away to start "
                       f"afresh. " + "; ".join(damaged))
