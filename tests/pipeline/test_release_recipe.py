"""`recipe="release"` builds the token ids the VisionCoach / Open-o3 Video RL trainer builds.

The reference below redoes, with the real Qwen2 tokenizer and transformers' chat template,
what the release's trainer does to a record (grpo_trainer_idl_v3_nofallback_grounding.py,
vision_process.py): render [system, user(video, question)], put the hint before the
assistant marker, replace the video placeholder by one captioned image block per frame
(merging key-frame images for temporal-spatial QA) and the duration line, and expand each
`<|image_pad|>` to the frame's merged-patch count, as its processor does. Frame counts and
sizes come from the container (PyAV) through the release's own formulas.
"""
import json
import math

import av
import numpy as np
import pytest
from PIL import Image

import data
from visd_jax import pipeline as P
from visd_jax.text import load_tokenizer
from visd_jax.text.release import HINTS, SYSTEM_PROMPTS

VIDEO_MIN, VIDEO_MAX, IMAGE_MIN, IMAGE_MAX = 128 * 28 * 28, 105369, 4 * 28 * 28, 256 * 28 * 28
MARKER = "<|im_end|>\n<|im_start|>assistant\n"


def _smart_resize(h, w, min_pixels, max_pixels, factor=28):  # qwen-vl-utils
    hb, wb = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb, wb = math.floor(h / beta / factor) * factor, math.floor(w / beta / factor) * factor
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


def _nframes(total, video_fps, fps=2.0):  # vision_process.smart_nframes, fps mode
    lo, hi = 4, (min(16, total) // 2) * 2
    n = min(min(max(total / video_fps * fps, lo), hi), total)
    return int(n // 2 * 2)


def release_ids(tok, rec, media_path, hint):
    messages = [{"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPTS[rec["task"]]}]},
                {"role": "user", "content": [{"type": "image" if rec["task"] == "visual QA" else "video"},
                                             {"type": "text", "text": rec["question"]}]}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    pos = text.rfind(MARKER)
    text = text[:pos] + hint + text[pos:]
    if rec["task"] == "visual QA":
        w, h = Image.open(media_path).size
        hb, wb = _smart_resize(h, w, IMAGE_MIN, IMAGE_MAX)
        return tok(text.replace("<|image_pad|>", "<|image_pad|>" * (hb * wb // 28 // 28)))["input_ids"]
    with av.open(media_path) as c:
        s = c.streams.video[0]
        total, video_fps, h, w = s.frames, float(s.average_rate), s.height, s.width
    n = _nframes(total, video_fps)
    fps = n / total * video_fps
    block = "<|vision_start|><|image_pad|><|vision_end|>\n"
    frames = ""
    if rec["task"] == "temporal-spatial free-form QA":
        kfs = [round(kf["time"]) for kf in rec["key_frames"]]
        kf_idx = ori_idx = 0
        frame_idx = 1
        while ori_idx < n:
            time_now = int(ori_idx / fps)
            if kf_idx < len(kfs) and time_now >= kfs[kf_idx]:
                frames += f"Frame {frame_idx} at {round(kfs[kf_idx], 1)}s: " + block
                kf_idx += 1
            else:
                frames += f"Frame {frame_idx} at {round(ori_idx / fps, 1)}s: " + block
                ori_idx += 1
            frame_idx += 1
    else:
        for ori_idx in range(n):
            frames += f"Frame {ori_idx + 1} at {round(ori_idx / fps, 1)}s: " + block
    frames += f"The video is in total {int(n / fps)} seconds.\n"
    text = text.replace("<|vision_start|><|video_pad|><|vision_end|>", frames)
    hb, wb = _smart_resize(h, w, VIDEO_MIN, VIDEO_MAX)
    return tok(text.replace("<|image_pad|>", "<|image_pad|>" * (hb * wb // 28 // 28)))["input_ids"]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    ds = data.generate(tmp_path_factory.mktemp("synth_recipe"), seed=4, num_clips=1, images=True,
                       min_seconds=9.0, max_seconds=11.0)
    kf_dir = tmp_path_factory.mktemp("kfs")
    recs = []
    for r in ds.records():
        if r["task"] == "temporal-spatial free-form QA":  # key-frame images, as the release has
            for kf in r["key_frames"]:
                kf["path"] = str(kf_dir / f"{r['id']}_{kf['idx']}.png")
                Image.fromarray(np.full((48, 64, 3), 40 * kf["idx"] % 255, np.uint8)).save(kf["path"])
        recs.append(r)
    (kf_dir / "ann.json").write_text(json.dumps(recs))
    return P.StgrSource(kf_dir / "ann.json", ds.video_root), recs


@pytest.mark.parametrize("prompt", ["", "raw", "darken"])
def test_release_recipe_ids_equal_the_release_processing(records, qwen_tokenizer_dir, prompt):
    src, recs = records
    cfg = P.ExampleConfig(tokenizer_dir=str(qwen_tokenizer_dir), recipe="release", prompt=prompt,
                          min_pixels=VIDEO_MIN, max_pixels=VIDEO_MAX, image_min_pixels=IMAGE_MIN,
                          image_max_pixels=IMAGE_MAX, max_tokens=16384, max_patches=65536)
    tok = load_tokenizer(qwen_tokenizer_dir)
    tasks, kinds = set(), set()
    for i, rec in enumerate(recs):
        ex = P.make_example(src[i], cfg)
        # darken where key-frame images carry boxes; raw (its hint) where there are none
        applied = ex["meta"]["prompt"]
        kinds.add(applied)
        has_boxes = bool((ex["key_frame_mask"][:, None] & ex["box_valid"]).any())
        assert applied == (prompt if prompt != "darken" or has_boxes else "raw")
        want = release_ids(tok, rec, src[i]["media"], HINTS[applied] if applied else "")
        assert ex["input_ids"].tolist() == want, f"{rec['task']} ({rec['id']})"
        n_img, gh, gw = ex["grid_thw"]
        assert len(ex["patches"]) == n_img * gh * gw
        tasks.add(rec["task"])
        if rec["task"] == "temporal-spatial free-form QA":
            assert ex["key_frame_mask"].sum() == len(rec["key_frames"])  # all inserted here
            if prompt == "darken":  # the key-frame images, and only they, carry the prompt
                raw = P.make_example(src[i], P.ExampleConfig(**{**cfg.__dict__, "prompt": ""}))
                per = gh * gw
                changed = [not np.array_equal(ex["patches"][j * per:(j + 1) * per], raw["patches"][j * per:(j + 1) * per])
                           for j in range(n_img)]
                boxed = ex["key_frame_mask"] & ex["box_valid"].any(1)  # a key frame without boxes stays raw
                assert changed == boxed[:n_img].tolist()
    assert len(tasks) == 6
    assert kinds == ({"darken", "raw"} if prompt == "darken" else {prompt})
