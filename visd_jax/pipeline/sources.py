"""Random-access record sources for grain: STGR JSON/JSONL files and TFDS array_record.

Each source maps an index to `{"index", "record", "media"}` where `media` is a file path
or the encoded bytes. A line that is not valid JSON becomes `{"record": None,
"error": reason}` (with its file and line) so the pipeline reports it like any other bad
record. Sources are picklable (grain's worker processes receive them).
"""
from __future__ import annotations

import json
import os
import pathlib

from visd_jax.pipeline import release


def _media_key(rec) -> str | None:
    if not isinstance(rec, dict):
        return None
    return "image" if rec.get("task") == "visual QA" else "video"


class StgrSource:
    """STGR annotations (a JSON list or JSONL) plus the folders their media live in.

    Records in the releases' format (`video_path` / `image_path` under a root chosen by
    `source`, key frames with image `path`s) are normalised on access (`release.normalize`);
    `media_roots` / `keyframe_roots` map sources to folders (`release.parse_roots`), relative
    ones taken from `video_root` (default: the annotations' folder)."""

    def __init__(self, annotations: str | os.PathLike, video_root: str | os.PathLike | None = None, *,
                 media_roots=None, keyframe_roots=None):
        self.annotations = pathlib.Path(annotations)
        if not self.annotations.is_file():
            raise FileNotFoundError(f"annotations file {self.annotations} does not exist")
        self.video_root = pathlib.Path(video_root) if video_root else self.annotations.parent
        self.media_roots = release.parse_roots(media_roots)
        self.keyframe_roots = release.parse_roots(keyframe_roots)
        raw = self.annotations.read_bytes()
        self._items: list[tuple[object, str | None]] = []
        if raw.lstrip().startswith(b"["):
            try:
                self._items = [(r, None) for r in json.loads(raw.decode("utf-8"))]
            except UnicodeDecodeError as e:
                line = raw[: e.start].count(b"\n") + 1
                raise ValueError(f"annotations {self.annotations}:{line}: not UTF-8 (byte "
                                 f"{raw[e.start]:#04x} at offset {e.start})") from e
            except json.JSONDecodeError as e:
                raise ValueError(f"annotations {self.annotations}: not valid JSON: {e}") from e
            self._items = [(r, None) if isinstance(r, dict) else
                           (None, f"{self.annotations}: item {i} is a {type(r).__name__}, not a record")
                           for i, (r, _) in enumerate(self._items)]
        else:
            # line by line: one undecodable or broken line is one bad record, named by line
            for n, line in enumerate(raw.split(b"\n"), 1):
                if not line.strip():
                    continue
                try:
                    self._items.append((json.loads(line.decode("utf-8")), None))
                except UnicodeDecodeError as e:
                    self._items.append((None, f"{self.annotations}:{n}: not UTF-8 (byte {line[e.start]:#04x} "
                                              f"at column {e.start + 1})"))
                except json.JSONDecodeError as e:
                    self._items.append((None, f"{self.annotations}:{n}: invalid JSON ({e.msg})"))

    def __len__(self) -> int:
        return len(self._items)

    def record(self, index: int):
        """The record at `index` in our schema (release fields normalised), or None."""
        rec, _ = self._items[index]
        return release.normalize(rec, media_roots=self.media_roots, keyframe_roots=self.keyframe_roots)

    def __getitem__(self, index: int) -> dict:
        _, err = self._items[index]
        rec = self.record(index)
        key = _media_key(rec)
        media = None
        if key and isinstance(rec.get(key), str):
            media = str(self.video_root / rec[key])
        if isinstance(rec, dict) and isinstance(rec.get("key_frames"), list):
            # key-frame images, like the media, are relative to video_root (or absolute)
            rec["key_frames"] = [{**kf, "path": str(self.video_root / kf["path"])}
                                 if isinstance(kf, dict) and isinstance(kf.get("path"), str) else kf
                                 for kf in rec["key_frames"]]
        return {"index": int(index), "record": rec, "media": media, "error": err}

    def __repr__(self) -> str:
        return f"StgrSource({self.annotations}, video_root={self.video_root}, n={len(self)})"


class TfdsSource:
    """A TFDS split read with `tfds.data_source` (array_record; TensorFlow not needed).

    Examples need an `annotation` text feature holding the STGR JSON and `video` / `image`
    bytes features, as written by `data.tfds_builder`.
    """

    def __init__(self, name: str, *, split: str, data_dir: str | os.PathLike | None = None):
        import tensorflow_datasets as tfds

        self.name, self.split, self.data_dir = name, split, data_dir
        self._source = tfds.data_source(name, split=split,
                                        data_dir=None if data_dir is None else str(data_dir))

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict:
        ex = self._source[index]
        text = ex["annotation"]
        text = text.decode() if isinstance(text, bytes) else text
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as e:
            return {"index": int(index), "record": None, "media": None,
                    "error": f"{self.name}[{self.split}][{index}]: invalid JSON ({e.msg})"}
        key = _media_key(rec)
        media = ex.get(key) if key else None
        return {"index": int(index), "record": rec, "media": bytes(media) if media else None,
                "error": None}

    def __repr__(self) -> str:
        return f"TfdsSource({self.name}, split={self.split}, n={len(self)})"
