"""Checks an STGR annotation file before a run: how many records per task are usable, and why
the others are not.

    python -m data.stgr check STGR-RL.json --video_root /data/videos \\
        --media_roots "STR=stgr/temporal_grounding/videos,STR_plm=stgr/plm/videos,TVG=tvg_r1" \\
        [--keyframe_roots "STR=stgr/temporal_grounding/kfs,STR_plm=stgr/plm/kfs"] [--decode]

Without `--decode` it reads the annotations only: schema (spans, boxes, key frames) and
whether each media file and key-frame image exists, seconds for the releases' ~100k
records. `--decode` also builds every example as training would (decode, sample, check
times and frame indices against the video, template), which takes as long as an epoch of
data loading. Exit status 0 when at least one record is usable, 1 otherwise.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys

from visd_jax.pipeline import ExampleConfig, RecordError, StgrSource, check_schema, make_example
from visd_jax.pipeline.loader import reason_kind
from visd_jax.pipeline.records import record_id
from visd_jax.pipeline.release import missing_files


@dataclasses.dataclass
class TaskReport:
    records: int = 0
    usable: int = 0
    reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    examples: list = dataclasses.field(default_factory=list)  # (id, reason), the first few


def _problem(src: StgrSource, i: int, decode: bool, example_cfg: ExampleConfig) -> str | None:
    item = src[i]
    if item["error"]:
        return item["error"]
    rec = item["record"]
    try:
        check_schema(rec, i)
        gone = missing_files(rec, src.video_root)
        if gone:
            return f"missing file: {gone[0]}" + (f" (+{len(gone) - 1} more)" if len(gone) > 1 else "")
        if decode:
            make_example(item, example_cfg)
    except RecordError as e:
        return e.reason
    except Exception as e:  # noqa: BLE001  one malformed record must not stop the report
        return f"{type(e).__name__}: {e}"
    return None


def check(annotations, *, video_root=None, media_roots=None, keyframe_roots=None, decode: bool = False,
          example_cfg: ExampleConfig | None = None, keep: int = 3) -> dict[str, TaskReport]:
    """{task: TaskReport} over every record of `annotations` ("<unreadable>" for lines that
    are not a JSON object)."""
    src = StgrSource(annotations, video_root, media_roots=media_roots, keyframe_roots=keyframe_roots)
    cfg = example_cfg or ExampleConfig()
    out: dict[str, TaskReport] = collections.defaultdict(TaskReport)
    for i in range(len(src)):
        rec = src.record(i)
        task = rec.get("task", "<no task>") if isinstance(rec, dict) else "<unreadable>"
        rep = out[str(task)]
        rep.records += 1
        why = _problem(src, i, decode, cfg)
        if why is None:
            rep.usable += 1
            continue
        rep.reasons[reason_kind(why)] += 1
        if len(rep.examples) < keep:
            rep.examples.append((record_id(rec, i), why))
    return dict(out)


def format_report(report: dict[str, TaskReport]) -> str:
    rows = [f"{'task':<32} {'records':>8} {'usable':>8}  top reasons"]
    for task, r in sorted(report.items()):
        top = "; ".join(f"{n} x {k}" for k, n in r.reasons.most_common(3))
        rows.append(f"{task:<32} {r.records:>8} {r.usable:>8}  {top}")
        rows += [f"{'':<51}e.g. {rid}: {why}" for rid, why in r.examples]
    total, usable = sum(r.records for r in report.values()), sum(r.usable for r in report.values())
    rows.append(f"{'all':<32} {total:>8} {usable:>8}")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.stgr", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="per task: records, usable, top reasons")
    c.add_argument("annotations")
    c.add_argument("--video_root", default=None, help="base of relative paths (default: the file's folder)")
    c.add_argument("--media_roots", default=None, help="source=dir,... or one dir (release video_path/image_path)")
    c.add_argument("--keyframe_roots", default=None, help="source=dir,... or one dir (key_frames[].path)")
    c.add_argument("--decode", action="store_true", help="also decode every video and build its example")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    try:
        report = check(args.annotations, video_root=args.video_root, media_roots=args.media_roots,
                       keyframe_roots=args.keyframe_roots, decode=args.decode)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({t: {"records": r.records, "usable": r.usable, "reasons": dict(r.reasons),
                              "examples": r.examples} for t, r in report.items()}, indent=1))
    else:
        print(format_report(report))
    return 0 if any(r.usable for r in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
