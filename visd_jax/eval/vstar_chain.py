"""The V-STaR benchmark run on a policy: five questions per video, scored as SPEC section 7.

`VStarSet` reads V-STaR annotations (the benchmark's `V_STaR_test.json`, a JSON list, or JSON
lines) and finds each `vid`'s video under a root (`<root>/**/<vid>.mp4`, as the reference
script looks for it). `evaluate_vstar` asks every item the five questions of
`vstar_protocol` with the project's sampler, on the inputs the policy was trained on (its
frame layout and pixels; the protocol's system prompt and question text), and appends one
row per item to `vstar_predictions.jsonl`:

  {"id", "vid", "completions": {question: text}, "answer_vqa", "judge_score", "judge",
   "gt_span", "pred_span_1", "pred_span_2", "gt_boxes", "pred_boxes_1", "pred_boxes_2",
   "input_size"}

the fields `python -m visd_jax.eval.vstar --predictions F` reads, so the table printed here
is the table of the file. An interrupted run resumes: items in the file are not asked again.
Acc needs an answer judge: `"match"` (offline, `vstar_protocol.match_score`; not the paper's)
or a callable from prompts to replies (a judge model asked V-STaR's judge prompt).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import time
from collections import Counter

from visd_jax.eval import vstar, vstar_protocol as vp

log = logging.getLogger(__name__)
PREDICTIONS = "vstar_predictions.jsonl"
BAD = "vstar_bad_records.jsonl"
TASK = "General video QA Free-form"  # our schema needs a task; the system prompt and question are V-STaR's


class VStarSet:
    """V-STaR items plus the folder their videos are under."""

    def __init__(self, annotations: str | os.PathLike, video_root: str | os.PathLike | None = None):
        self.annotations = pathlib.Path(annotations)
        if not self.annotations.is_file():
            raise FileNotFoundError(f"V-STaR annotations {self.annotations} do not exist")
        raw = self.annotations.read_text(encoding="utf-8")
        try:
            if raw.lstrip().startswith("["):
                self.items = json.loads(raw)
            else:
                self.items = [json.loads(line) for line in raw.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise ValueError(f"V-STaR annotations {self.annotations}: not JSON ({e})") from e
        self.video_root = pathlib.Path(video_root) if video_root else self.annotations.parent
        self._videos: dict[str, pathlib.Path] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def item_id(self, i: int) -> str:
        it = self.items[i]
        vid = it.get("vid") if isinstance(it, dict) else None
        return f"{i}:{vid}"  # a vid can carry several items; the index keeps resume exact

    def video(self, vid: str) -> pathlib.Path:
        if self._videos is None:  # one walk, not one per item (the reference walks per item)
            self._videos = {}
            for root, _, files in os.walk(self.video_root):
                for f in files:
                    if f.endswith(".mp4"):
                        self._videos.setdefault(f[:-4], pathlib.Path(root) / f)
        if vid not in self._videos:
            raise vp.VStarError(f"vid {vid!r}: no {vid}.mp4 under {self.video_root}")
        return self._videos[vid]


def _examples(item: dict, rid: str, video: pathlib.Path, cfg) -> list[dict]:
    from visd_jax.pipeline import make_example

    out = []
    for q in vp.QUESTIONS:
        rec = {"id": f"{rid}/{q}", "task": TASK, "question": vp.prompt(item, q), "answer": item["answer"],
               "video": str(video)}
        out.append(make_example({"record": rec, "media": str(video), "index": None}, cfg))
    return out


def score_item(item: dict, rid: str, texts: dict[str, str], input_size, judge_score: int, judge: str, *,
               rescale: bool = True) -> dict:
    """The predictions row of one item from its five completions (host only, no model)."""
    size = (int(item["width"]), int(item["height"]))
    # gold frames keyed as V-STaR's scorer keys them: str(timestamp)
    gt_boxes = [[str(b["timestamp"]), [b["xmin"], b["ymin"], b["xmax"], b["ymax"]]] for b in item["bboxes"]]
    boxes = dict(input_size=input_size, video_size=size, rescale=rescale)
    return {"id": rid, "vid": item["vid"], "completions": texts, "answer_vqa": vp.answer_text(texts["vqa"]),
            "judge_score": judge_score, "judge": judge, "gt_span": list(item["timestamps"]),
            "pred_span_1": vp.parse_span(texts["temporal"]), "pred_span_2": vp.parse_span(texts["temporal_2"]),
            "gt_boxes": gt_boxes,
            "pred_boxes_1": vp.parse_boxes(texts["spatial"], **boxes),
            "pred_boxes_2": vp.parse_boxes(texts["spatial_2"], **boxes),
            "input_size": list(input_size)}


def judge_answers(items: list[dict], vqa_texts: list[str], judge) -> tuple[list[int], int]:
    """Each item's judge score of its "what" answer, and how many ratings were unreadable.
    V-STaR judges no empty answer (0) and counts an unreadable rating as 0."""
    answers = [vp.answer_text(t) for t in vqa_texts]
    asks = [k for k, a in enumerate(answers) if a]
    scores = [0] * len(answers)
    if judge == "match":
        for k in asks:
            scores[k] = vp.match_score(items[k]["answer"], answers[k])
        return scores, 0
    replies = judge([vp.judge_prompt(items[k]["question"], items[k]["answer"], answers[k]) for k in asks]) if asks else []
    rated = [vp.judge_reply_score(r) for r in replies]
    for k, v in zip(asks, rated):
        scores[k] = max(v, 0)
    return scores, sum(v < 0 for v in rated)


def evaluate_vstar(model_fn, vset: VStarSet, io, out_dir, *, items_per_call: int, max_new_tokens: int,
                   judge="match", rescale: bool = True, temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                   limit: int | None = None, programs=None, progress: bool = True, stop_after: int | None = None,
                   write: bool = True) -> dict:
    """Appends a row for every item of `vset` not yet in `out_dir`/vstar_predictions.jsonl and
    returns the V-STaR metrics of the whole file (`vstar.evaluate`) with counts and speed.
    `io.ctx` must hold 5 x `items_per_call` prompts' vision blocks (`run_inputs(blocks_per_batch=)`).
    `judge`: "match", or prompts -> replies (V-STaR's judge system prompt is `vp.JUDGE_SYSTEM`);
    a file written under another judge is refused. `rescale`: boxes to video pixels (False:
    as the release's script scores them). Items that cannot be asked count against Acc, as
    V-STaR's scorer counts an item without an answer."""
    import jax
    from etils import epath
    from tqdm import tqdm

    from visd_jax.eval.run import answer, eval_sampler, read_predictions
    from visd_jax.pipeline import RecordError

    out_dir = epath.Path(out_dir)
    path = out_dir / PREDICTIONS
    if write:
        out_dir.mkdir(parents=True, exist_ok=True)
    n = len(vset) if limit is None else min(limit, len(vset))
    ids = {vset.item_id(i) for i in range(n)}
    judge_name = judge if isinstance(judge, str) else "model"
    kept = [r for r in (read_predictions(path) if write else []) if r["id"] in ids]
    other = {r.get("judge") for r in kept} - {judge_name}
    if other:
        raise ValueError(f"{path}: rows judged by {sorted(other)}, this run judges with {judge_name!r}; "
                         f"use another work directory (Acc must come from one judge)")
    done = {r["id"] for r in kept}
    todo = [i for i in range(n) if vset.item_id(i) not in done]
    cfg = dataclasses.replace(io.example_cfg, system=vp.SYSTEM, prompt="")
    sampler = eval_sampler(model_fn, io, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                           programs=programs)
    width = len(vp.QUESTIONS) * items_per_call  # prompts per call: one static batch shape
    key, bad, invalid = jax.random.key(seed), [], 0
    bar = tqdm(total=len(todo), desc="V-STaR", unit="item", disable=not progress)
    t0, tokens, asked = time.perf_counter(), 0, 0
    for c, start in enumerate(range(0, len(todo), items_per_call)):
        if stop_after is not None and c >= stop_after:
            break
        chunk, ready = todo[start:start + items_per_call], []
        for i in chunk:
            rid = vset.item_id(i)
            try:
                item = vp.check_item(vset.items[i], i)
                ready.append((rid, item, _examples(item, rid, vset.video(item["vid"]), cfg)))
            except (vp.VStarError, RecordError) as e:
                bad.append({"id": rid, "reason": str(e)})
        if ready:
            examples = [e for _, _, exs in ready for e in exs]
            ro = answer(sampler, examples, io, width=width, max_frames=cfg.frame_slots,
                        key=jax.random.fold_in(key, chunk[0]))
            tokens += int(ro.mask[:len(examples)].sum())
            asked += len(examples)
            texts = [dict(zip(vp.QUESTIONS, ro.texts[k * 5:(k + 1) * 5])) for k in range(len(ready))]
            scores, unreadable = judge_answers([it for _, it, _ in ready], [t["vqa"] for t in texts], judge)
            invalid += unreadable
            rows = [score_item(it, rid, t, tuple(exs[0]["meta"]["image_size"]), s, judge_name, rescale=rescale)
                    for (rid, it, exs), t, s in zip(ready, texts, scores)]
            kept += rows
            if write:
                with path.open("a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in rows)
        bar.update(len(chunk))
    bar.close()
    if bad and write:  # each unusable item once, however often a resume retries it
        seen = {b["id"] for b in read_predictions(out_dir / BAD)}
        with (out_dir / BAD).open("a") as f:
            f.writelines(json.dumps(b) + "\n" for b in bad if b["id"] not in seen)
    if not kept:
        reasons = Counter(b["reason"][:120] for b in bad)
        raise ValueError(f"V-STaR: no usable item among {n} in {vset.annotations}; reasons: {dict(reasons)}")
    dt = time.perf_counter() - t0
    return {"metrics": vstar.evaluate(kept, unanswered=len(bad)), "items": len(kept), "unusable": len(bad), "judge": judge_name,
            "judge_unreadable": invalid,
            "throughput": {"questions": asked, "seconds": dt, "items_per_s": asked / 5 / max(dt, 1e-9),
                           "completion_tokens_per_s": tokens / max(dt, 1e-9)}}
