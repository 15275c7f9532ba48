"""TFDS builder for the synthetic grounded video QA set, written as array_record.

Works without TensorFlow: build with `build(data_dir, seed=, num_clips=)`, read with
`tfds.data_source("synth_video_qa/s<seed>_n<num_clips>", data_dir=...)` (or `source()`
below), which returns random-access sources that grain can shard and shuffle.

Each example holds the STGR record as JSON text (`annotation`) plus the media bytes
(`video` for video tasks, `image` for visual QA; the other one is empty), so a TFDS copy is
self-contained: no video root is needed to read it. Clip i goes to `validation` when
i % 5 == 4, else to `train`; every record of a clip stays in the same split.
"""
from __future__ import annotations

import json
import pathlib
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from data import synth

NAME = "synth_video_qa"


def config_name(seed: int, num_clips: int) -> str:
    return f"s{seed}_n{num_clips}"


class SynthVideoQaConfig(tfds.core.BuilderConfig):
    def __init__(self, *, seed: int = 0, num_clips: int = 24, **kwargs):
        super().__init__(name=config_name(seed, num_clips),
                         description=f"seed {seed}, {num_clips} clips", **kwargs)
        self.seed = seed
        self.num_clips = num_clips


class SynthVideoQa(tfds.core.GeneratorBasedBuilder):
    """Synthetic grounded video QA (STGR records with media bytes)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Moving named objects; five video task types plus visual QA."}
    BUILDER_CONFIGS = [SynthVideoQaConfig(seed=0, num_clips=24)]

    # TFDS resolves a builder's source folder (only to look for download checksums) with
    # the `importlib_resources` backport, which is not installed here; there is nothing
    # to download, so there is no checksum file to find.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return None

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(),
                "task": tfds.features.Text(),
                "annotation": tfds.features.Text(),
                "video": tfds.features.Tensor(shape=(), dtype=np.object_),
                "image": tfds.features.Tensor(shape=(), dtype=np.object_),
            }),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the clips are generated here
        cfg = self.builder_config
        cache = getattr(self, "synth_cache", None) or tempfile.mkdtemp(prefix="synth_tfds_")
        ds = synth.generate(cache, seed=cfg.seed, num_clips=cfg.num_clips)
        return {"train": self._generate_examples(ds, val=False),
                "validation": self._generate_examples(ds, val=True)}

    def _generate_examples(self, ds: synth.SynthDataset, val: bool):
        for rec in ds.records():
            clip = int(rec["id"].split("-")[1])
            if (clip % 5 == 4) != val:
                continue
            media = ds.video_root / rec.get("video", rec.get("image", ""))
            data = media.read_bytes()
            yield rec["id"], {
                "id": rec["id"],
                "task": rec["task"],
                "annotation": json.dumps(rec, sort_keys=True),
                "video": data if "video" in rec else b"",
                "image": data if "image" in rec else b"",
            }


def build(data_dir, *, seed: int = 0, num_clips: int = 24) -> str:
    """Generates and writes the dataset (array_record) under data_dir; returns its name."""
    config = SynthVideoQaConfig(seed=seed, num_clips=num_clips)
    builder = SynthVideoQa(data_dir=str(data_dir), config=config, file_format="array_record")
    builder.synth_cache = pathlib.Path(data_dir) / "synth_cache"  # clips reused on rebuild
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        verify_ssl=False))
    return f"{NAME}/{config.name}"


def source(data_dir, split: str, *, seed: int = 0, num_clips: int = 24):
    """The random-access source of one split (building it first if it is absent)."""
    name = f"{NAME}/{config_name(seed, num_clips)}"
    root = pathlib.Path(data_dir) / NAME / config_name(seed, num_clips)
    if not root.exists():
        build(data_dir, seed=seed, num_clips=num_clips)
    return tfds.data_source(name, data_dir=str(data_dir), split=split)
