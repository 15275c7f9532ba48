"""Clips/s of the full pipeline (decode -> sample -> prompt -> patchify -> template -> pad)
with 0 and 2 grain workers over the shared real clips.

    python bench/pipeline_workers.py [--videos ../shared/videos] [--epochs 6] [--prompt darken]

Prints a markdown table. The first batch (worker start-up, jit of the prompt op) is timed
apart from the steady state.
"""
from __future__ import annotations

import json
import pathlib
import tempfile
import time

from absl import app, flags

from visd_jax import pipeline as P

VIDEOS = flags.DEFINE_string("videos", str(pathlib.Path(__file__).resolve().parents[2]
                                          / "shared" / "videos"), "folder of mp4 clips")
EPOCHS = flags.DEFINE_integer("epochs", 6, "passes over the clips")
PROMPT = flags.DEFINE_string("prompt", "darken", "visual prompt on key frames")


def _annotations(videos: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    recs = []
    for i, v in enumerate(sorted(videos.glob("*.mp4"))):
        recs.append({"id": v.stem, "task": "temporal-spatial free-form QA", "video": v.name,
                     "question": "What happens in the video?", "answer": "something",
                     "key_frames": [{"idx": 1, "time": 0.05 * i}],
                     "key_items": {"1": {"thing": [[0.25, 0.25, 0.75, 0.75]]}}})
    if not recs:
        raise SystemExit(f"no .mp4 files in {videos}")
    path = out / "bench.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return path


def clips_per_second(source, *, workers: int, epochs: int, prompt: str = "darken",
                     batch_size: int = 2, decode_threads: int | None = None) -> dict:
    """Runs `epochs` passes over `source`; returns first-batch seconds and steady clips/s."""
    cfg = P.PipelineConfig(
        batch_size=batch_size, workers=workers, num_epochs=epochs, shuffle=False,
        shard_index=0, shard_count=1,
        example=P.ExampleConfig(prompt=prompt, decode_threads=decode_threads))
    t0 = time.perf_counter()
    it = P.make_iterator(source, cfg)
    first = next(it)
    t1 = time.perf_counter()
    n = int(first["example_mask"].sum())
    m = 0
    for batch in it:
        m += int(batch["example_mask"].sum())
    t2 = time.perf_counter()
    it.close()
    return {"workers": workers, "threads": P.decode_threads(cfg), "first_s": t1 - t0, "clips": n + m,
            "clips_per_s": m / max(t2 - t1, 1e-9)}


def main(argv):
    del argv
    videos = pathlib.Path(VIDEOS.value)
    with tempfile.TemporaryDirectory() as tmp:
        src = P.StgrSource(_annotations(videos, pathlib.Path(tmp)), videos)
        # decode threads: 0 = FFmpeg's own count per decoder (the loader's old behaviour),
        # None = the loader's default, the cores shared among concurrent decoders
        rows = [clips_per_second(src, workers=w, epochs=EPOCHS.value, prompt=PROMPT.value,
                                 decode_threads=d)
                for w in (0, 2) for d in (0, None)]
    base = rows[0]["clips_per_s"]
    print("| workers | decode threads | clips | first batch (s) | steady clips/s | vs first row |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        label = "FFmpeg's (cores + 1)" if r["threads"] == 0 else f"{r['threads']} (shared)"
        print(f"| {r['workers']} | {label} | {r['clips']} | {r['first_s']:.2f} "
              f"| {r['clips_per_s']:.2f} | {r['clips_per_s'] / base:.2f}x |")


if __name__ == "__main__":  # grain spawns workers that re-import this module
    app.run(main)
