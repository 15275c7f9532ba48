"""The coach's visual prompts as the release applies them: a prompt covers both frames of
its temporal patch, a key frame without boxes stays raw, a record without boxes is coached
`raw` with the raw hint; hand-computed pixels on canned frames, then the real pipeline."""
import numpy as np
import pytest

import data
from visd_jax import pipeline as P
from visd_jax.pipeline.example import _cover_patches, prompt_frames
from visd_jax.prompts import hint
from visd_jax.text.release import HINTS as RELEASE


def _canned():
    """4 frames of 64x64 grey 100; key frames 0 (no boxes) and 2 (box [20, 20, 40, 40])."""
    frames = np.full((4, 64, 64, 3), 100, np.uint8)
    boxes = np.zeros((4, 2, 4), np.float32)
    valid = np.zeros((4, 2), bool)
    boxes[2, 0], valid[2, 0] = [20, 20, 40, 40], True
    return frames, boxes, valid, np.array([True, False, True, False])


def test_cover_patches_widens_key_frames_and_lends_boxes():
    _, boxes, valid, key = _canned()
    b, v, k = _cover_patches(boxes, valid, key, 2)
    assert k.tolist() == [True, True, True, True]
    np.testing.assert_array_equal(b[3], b[2])  # frame 3 borrows its twin's box
    assert v[3].tolist() == [True, False] and not v[:2].any()  # patch 0 has no box to lend
    assert key.tolist() == [True, False, True, False]  # inputs untouched


def test_darken_covers_the_whole_patch_and_leaves_boxless_key_frames_raw():
    frames, boxes, valid, key = _canned()
    out, kind = prompt_frames(frames, "darken", *_cover_patches(boxes, valid, key, 2), numbers=np.arange(4) + 1)
    assert kind == "darken"
    np.testing.assert_array_equal(out[:2], frames[:2])  # key frame 0 has no boxes: not darkened whole
    for t in (2, 3):  # both frames of the prompted patch: 0.3 x 100 outside the box padded by 10 px
        assert out[t, 0, 0, 0] == 30 and out[t, 5, 60, 1] == 30
        assert out[t, 30, 30, 2] == 100 and out[t, 12, 12, 0] == 100  # inside the padded box
    # without the patch cover, frame 3 would stay bright (the diluted prompt this replaces)
    half, _ = prompt_frames(frames, "darken", boxes, valid, key, numbers=np.arange(4) + 1)
    np.testing.assert_array_equal(half[3], frames[3])


@pytest.mark.parametrize("kind", ["darken", "circle", "attention"])
def test_box_prompts_without_boxes_are_raw(kind):
    frames, boxes, _, key = _canned()
    out, applied = prompt_frames(frames, kind, boxes, np.zeros((4, 2), bool), key, numbers=np.arange(4))
    assert applied == "raw"
    np.testing.assert_array_equal(out, frames)


def test_numbers_need_no_boxes():
    frames, boxes, _, key = _canned()
    valid = np.zeros((4, 2), bool)
    out, applied = prompt_frames(frames, "numbers", boxes, valid, key, numbers=np.arange(4) + 1)
    assert applied == "numbers" and all(not np.array_equal(out[t], frames[t]) for t in range(4))
    # on a mask (the release recipe's key-frame images): only there, and raw when none
    out, applied = prompt_frames(frames, "numbers", boxes, valid, key, numbers=np.arange(4) + 1,
                                 numbers_on=np.array([False, True, False, False]))
    assert applied == "numbers" and np.array_equal(out[0], frames[0]) and not np.array_equal(out[1], frames[1])
    _, applied = prompt_frames(frames, "numbers", boxes, valid, key, numbers=np.arange(4),
                               numbers_on=np.zeros(4, bool))
    assert applied == "raw"


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return data.generate(tmp_path_factory.mktemp("synth"), seed=0, num_clips=1)


def test_records_get_the_kind_they_can_carry(synth, qwen_tokenizer_dir):
    rec = next(r for r in synth.records() if r["task"] == "temporal-spatial free-form QA")
    item = {"index": 0, "record": rec, "media": str(synth.video_root / rec["video"])}
    cfg = P.ExampleConfig(tokenizer_dir=str(qwen_tokenizer_dir), max_frames=8, max_tokens=4096)
    plain = P.make_example(item, cfg)
    dark = P.make_example(item, P.ExampleConfig(**{**cfg.__dict__, "prompt": "darken"}))
    raw = P.make_example(item, P.ExampleConfig(**{**cfg.__dict__, "prompt": "raw"}))
    assert plain["meta"]["prompt"] == "" and plain["meta"]["question"] == rec["question"]
    assert dark["meta"]["prompt"] == "darken" and dark["meta"]["question"] == rec["question"] + RELEASE["darken"]
    assert raw["meta"]["question"] == rec["question"] + RELEASE["raw"] == rec["question"] + hint("raw")
    np.testing.assert_array_equal(raw["patches"], plain["patches"])  # raw: the frames as they are
    # the darkened blocks are whole temporal patches: a vision block either changes or not
    per = int(np.prod(plain["grid_thw"][1:]))
    changed = [not np.array_equal(dark["patches"][g * per:(g + 1) * per], plain["patches"][g * per:(g + 1) * per])
               for g in range(int(plain["grid_thw"][0]))]
    assert any(changed) and not all(changed)
    # no key_items at all: darken has nothing to darken, and the record is coached raw
    bare = {**item, "record": {**rec, "key_items": {}}}
    got = P.make_example(bare, P.ExampleConfig(**{**cfg.__dict__, "prompt": "darken"}))
    assert got["meta"]["prompt"] == "raw" and got["meta"]["question"] == rec["question"] + RELEASE["raw"]
    np.testing.assert_array_equal(got["patches"], plain["patches"])
    with pytest.raises(ValueError, match="prompt must be"):
        P.ExampleConfig(prompt="blur")
