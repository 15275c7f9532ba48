"""Random-access record sources for grain: STGR JSON/JSONL files and TFDS array_record.

Each source maps an index to `{"index", "record", "media"}` where `media` is a file path
or the encoded bytes. A line that is not valid JSON becomes `{"record": None,
"error": reason}` so the pipeline reports it like any other bad record. Sources are
picklable (grain's worker processes receive them).
"""
from __future__ import annotations

import json
import os
import pathlib


def _media_key(rec) -> str | None:
    if not isinstance(rec, dict):
        return None
    return "image" if rec.get("task") == "visual QA" else "video"


class StgrSource:
    """STGR annotations (a JSON list or JSONL) plus the folder their media paths live in."""

    def __init__(self, annotations: str | os.PathLike, video_root: str | os.PathLike | None = None):
        self.annotations = pathlib.Path(annotations)
        if not self.annotations.is_file():
            raise FileNotFoundError(f"annotations file {self.annotations} does not exist")
        self.video_root = pathlib.Path(video_root) if video_root else self.annotations.parent
        text = self.annotations.read_text()
        self._items: list[tuple[object, str | None]] = []
        if text.lstrip().startswith("["):
            try:
                self._items = [(r, None) for r in json.loads(text)]
            except json.JSONDecodeError as e:
                raise ValueError(f"annotations {self.annotations}: not valid JSON: {e}") from e
        else:
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    self._items.append((json.loads(line), None))
                except json.JSONDecodeError as e:
                    self._items.append((None, f"{self.annotations}:{n}: invalid JSON ({e.msg})"))

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict:
        rec, err = self._items[index]
        key = _media_key(rec)
        media = None
        if key and isinstance(rec.get(key), str):
            media = str(self.video_root / rec[key])
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
