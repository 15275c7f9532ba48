"""The grain pipeline: shard -> shuffle -> repeat -> make_example (workers) -> policy -> batch.

    it = make_iterator(source, PipelineConfig(batch_size=4, workers=2))
    batch = next(it)               # static-shape numpy dict + batch["meta"] (list of dicts)
    state = it.get_state()         # JSON-able; iterator.set_state(state) resumes exactly
    it.report()                    # {"good": n, "bad": m, "bad_records": [(id, reason)...]}

Examples are built in grain worker processes (`mp_prefetch`); bad records travel back as
markers and the policy is applied in the main process, so counts and logs are complete
whatever the worker count. `skip` (training default) drops, counts and logs a bad record;
`raise` (evaluation default) raises its RecordError. Skipping never loops: a whole pass
over the data without one usable record, or a skipped share above `max_bad_fraction`
(after `min_records` records), raises `NoUsableRecords` with the top reasons and ids.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import re

import grain

from visd_jax.pipeline.batching import Buckets, pad_batch
from visd_jax.pipeline.example import ExampleConfig, make_example
from visd_jax.pipeline.records import NoUsableRecords, RecordError, record_id

log = logging.getLogger(__name__)
POLICIES = ("skip", "raise")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    example: ExampleConfig = ExampleConfig()
    buckets: Buckets = Buckets()
    batch_size: int = 8
    policy: str = "skip"
    shuffle: bool = True
    seed: int = 0
    num_epochs: int | None = 1  # None: repeat forever (training)
    drop_remainder: bool = False
    workers: int = 0
    worker_buffer: int = 2
    read_threads: int = 2  # grain's per-process prefetch threads (its default of 16 is for big hosts)
    # skip policy: stop when more than this share of the records seen so far were bad (once
    # at least `min_records` were seen), or after a whole pass without a usable one
    max_bad_fraction: float = 0.5
    # the share is tested after every bad record: few records would stop a usable 40%-bad run
    min_records: int = 200
    shard_index: int | None = None  # default: jax.process_index()
    shard_count: int | None = None  # default: jax.process_count()

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.batch_size < 1 or self.workers < 0 or self.worker_buffer < 1:
            raise ValueError(f"need batch_size >= 1, workers >= 0, worker_buffer >= 1; got "
                             f"{self.batch_size}, {self.workers}, {self.worker_buffer}")
        if not 0 <= self.max_bad_fraction <= 1 or self.min_records < 1:
            raise ValueError(f"need 0 <= max_bad_fraction <= 1 and min_records >= 1; got "
                             f"{self.max_bad_fraction}, {self.min_records}")
        if self.num_epochs is not None and self.num_epochs < 1:
            raise ValueError(f"num_epochs must be >= 1 or None, got {self.num_epochs}")
        if self.buckets.tokens[-1] > self.example.max_tokens or \
                self.buckets.patches[-1] > self.example.max_patches:
            raise ValueError("the largest bucket must not exceed example.max_tokens/max_patches")

    @classmethod
    def for_eval(cls, **kw) -> "PipelineConfig":
        """Evaluation defaults: raise on bad records, no shuffling, one pass, no dropping."""
        return cls(**{"policy": "raise", "shuffle": False, "num_epochs": 1, **kw})


class _Prepare:
    """The per-record transform; a bad record becomes a marker instead of an exception."""

    def __init__(self, cfg: ExampleConfig):
        self.cfg = cfg

    def __call__(self, item: dict) -> dict:
        try:
            return make_example(item, self.cfg)
        except RecordError as e:
            return {"bad": (e.record_id, e.reason)}
        except (ValueError, OSError, RuntimeError, KeyError, TypeError) as e:
            # Failures a malformed record can provoke in decoders and parsers. Import errors
            # and other bugs of the pipeline itself propagate: they are not the record's.
            rid = record_id(item.get("record"), item.get("index"))
            return {"bad": (rid, f"{type(e).__name__}: {e}")}


def reason_kind(reason: str) -> str:
    """A bad record's reason without its particulars (paths, numbers), for counting."""
    head = reason.split(":", 1)[0] if ":" in reason[:60] else reason
    return re.sub(r"\d+(\.\d+)?", "N", head).strip()


class _PolicyIterator(grain.DatasetIterator):
    def __init__(self, parent, cfg: PipelineConfig, pass_size: int, report_limit: int):
        super().__init__(parent)
        self._cfg, self._pass, self._limit = cfg, pass_size, report_limit
        self._good = self._bad = self._since_good = 0
        self._reported: list[tuple[str, str]] = []
        self._kinds: collections.Counter = collections.Counter()

    def __next__(self):
        c = self._cfg
        while True:
            ex = next(self._parent)
            if "bad" not in ex:
                self._good += 1
                self._since_good = 0
                return ex
            rid, reason = ex["bad"]
            if c.policy == "raise":
                raise RecordError(rid, reason)
            self._bad += 1
            self._since_good += 1
            self._kinds[reason_kind(reason)] += 1
            log.warning("skipping bad record %s: %s", rid, reason)
            if len(self._reported) < self._limit:
                self._reported.append((rid, reason))
            seen = self._good + self._bad
            if self._since_good >= self._pass:
                raise NoUsableRecords(self._summary(f"no usable record in a whole pass over the "
                                                    f"{self._pass} records"))
            if seen >= c.min_records and self._bad > c.max_bad_fraction * seen:
                raise NoUsableRecords(self._summary(
                    f"{self._bad} of the {seen} records read were bad, more than "
                    f"max_bad_fraction={c.max_bad_fraction}"))

    def _summary(self, what: str) -> str:
        top = "; ".join(f"{n} x {k}" for k, n in self._kinds.most_common(5))
        examples = "; ".join(f"{rid}: {reason}" for rid, reason in self._reported[-3:])
        return f"{what}. Reasons: {top}. Last bad records: {examples}"

    def get_state(self):
        return {"parent": self._parent.get_state(), "good": self._good, "bad": self._bad,
                "since_good": self._since_good, "kinds": dict(self._kinds)}

    def set_state(self, state):
        self._parent.set_state(state["parent"])
        self._good, self._bad = state["good"], state["bad"]
        self._since_good = state.get("since_good", 0)
        self._kinds = collections.Counter(state.get("kinds", {}))


class _PolicyDataset(grain.IterDataset):
    def __init__(self, parent, cfg: PipelineConfig, pass_size: int, report_limit: int = 10_000):
        super().__init__(parent)
        self._cfg, self._pass, self._limit = cfg, pass_size, report_limit

    def __iter__(self):
        return _PolicyIterator(self._parent.__iter__(), self._cfg, self._pass, self._limit)


class _BatchIterator(grain.DatasetIterator):
    """Takes batch_size examples per call and pads them; holds nothing between calls, so
    its state is its parent's."""

    def __init__(self, parent, cfg: PipelineConfig, pad_id: int):
        super().__init__(parent)
        self._cfg, self._pad_id = cfg, pad_id

    def __next__(self):
        c = self._cfg
        examples = []
        while len(examples) < c.batch_size:
            try:
                examples.append(next(self._parent))
            except StopIteration:
                break
        if not examples or (c.drop_remainder and len(examples) < c.batch_size):
            raise StopIteration
        return pad_batch(examples, batch_size=c.batch_size, buckets=c.buckets,
                         max_frames=c.example.frame_slots, pad_id=self._pad_id)

    def get_state(self):
        return self._parent.get_state()

    def set_state(self, state):
        self._parent.set_state(state)


class _BatchDataset(grain.IterDataset):
    def __init__(self, parent, cfg: PipelineConfig, pad_id: int):
        super().__init__(parent)
        self._cfg, self._pad_id = cfg, pad_id

    def __iter__(self):
        return _BatchIterator(self._parent.__iter__(), self._cfg, self._pad_id)


class PipelineIterator:
    """Batches of model input with checkpointable state and a bad-record report."""

    def __init__(self, dataset: grain.IterDataset):
        self._it = iter(dataset)
        it = self._it
        while not isinstance(it, _PolicyIterator):
            it = it._parent  # the batch iterator wraps the policy iterator
        self._policy_it = it

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return next(self._it)

    def get_state(self) -> dict:
        return self._it.get_state()

    def set_state(self, state: dict) -> None:
        self._it.set_state(state)

    def report(self) -> dict:
        p = self._policy_it
        return {"good": p._good, "bad": p._bad, "bad_records": list(p._reported)}

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


def _shard(cfg: PipelineConfig) -> tuple[int, int]:
    if cfg.shard_index is not None and cfg.shard_count is not None:
        index, count = cfg.shard_index, cfg.shard_count
    else:
        import jax

        index, count = jax.process_index(), jax.process_count()
    if not 0 <= index < count:
        raise ValueError(f"shard_index {index} must be in [0, shard_count={count})")
    return index, count


def decode_threads(cfg: PipelineConfig, cpus: int | None = None) -> int:
    """FFmpeg threads per decode: the example's setting, or (None) this host's cores shared
    among the decodes that run at once, one per read thread in each worker process. Left
    to FFmpeg, every decoder starts cores + 1 threads, and 16 workers on a TPU host would
    run hundreds of decoder threads on the same cores."""
    if cfg.example.decode_threads is not None:
        return cfg.example.decode_threads
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // (max(1, cfg.workers) * max(1, cfg.read_threads)))


def make_dataset(source, cfg: PipelineConfig) -> grain.IterDataset:
    """The grain dataset over a random-access `source` (StgrSource, TfdsSource, any
    len/getitem sequence of items)."""
    from visd_jax.text import load_tokenizer, special_ids

    # loaded (the tiny one built) once here, not raced by every worker; its pad id pads
    pad_id = special_ids(load_tokenizer(cfg.example.tokenizer_dir), cfg.example.tokenizer_dir).pad
    index, count = _shard(cfg)
    ds = grain.MapDataset.source(source)
    ds = ds[index::count]  # this process's records; every process sees a disjoint slice
    if len(ds) == 0:
        raise ValueError(f"shard {index}/{count} of {source!r} is empty")
    pass_size = len(ds)
    if cfg.shuffle:
        ds = ds.shuffle(seed=cfg.seed)
    ds = ds.repeat(cfg.num_epochs)  # reshuffled per epoch, deterministically
    # An example longer than the largest bucket is a bad record here, under the policy,
    # not an error of pad_batch that would stop the run.
    example = dataclasses.replace(cfg.example, decode_threads=decode_threads(cfg),
                                  max_tokens=min(cfg.example.max_tokens, cfg.buckets.tokens[-1]),
                                  max_patches=min(cfg.example.max_patches, cfg.buckets.patches[-1]))
    ds = ds.map(_Prepare(example))
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=cfg.read_threads,
                                              prefetch_buffer_size=2 * cfg.batch_size))
    if cfg.workers > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=cfg.workers, per_worker_buffer_size=cfg.worker_buffer))
    it = _PolicyDataset(it, cfg, pass_size=pass_size)
    return _BatchDataset(it, cfg, pad_id)


def make_iterator(source, cfg: PipelineConfig) -> PipelineIterator:
    return PipelineIterator(make_dataset(source, cfg))
