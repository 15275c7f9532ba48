"""Host-side media: a batch's rows as vision blocks, transformers' exact-grid form of them,
and the typed `RolloutBatch` (canvases shared by the rows that read them, rows taken with
their media)."""
import dataclasses

import numpy as np
import pytest

from visd_jax.models.canvas import CanvasBuckets
from visd_jax.text import load_tokenizer, special_ids
from visd_jax.training import inputs
from visd_jax.training.batch import RunContext, build_batch


def _batch(dtype=np.float32):
    # row 0: video of 2 temporal patches on a 2x2 grid; row 1: image 2x4; row 2: video 1x2x2
    grids = np.array([[2, 2, 2], [1, 2, 4], [1, 2, 2]])
    patches = np.zeros((3, 8, 5), dtype)
    for b, g in enumerate(grids):
        n = int(np.prod(g))
        patches[b, :n] = 100 * b + np.arange(n)[:, None]  # row b, patch i -> 100b + i
    return {"grid_thw": grids, "patches": patches, "second_per_grid": np.array([0.5, 0.0, 1.0], np.float32),
            "meta": [{"task": "temporal QA"}, {"task": "visual QA"}, {"task": "General video QA MCQ"}]}


def test_rows_become_blocks_in_prompt_order():
    b = _batch()
    v, i, v2 = (inputs.blocks_of_row(b, r) for r in range(3))
    assert [(x.kind, x.h, x.w, x.seconds) for x in v] == [("video", 2, 2, 0.5)] * 2
    assert [(x.kind, x.h, x.w) for x in i] == [("image", 2, 4)]
    np.testing.assert_array_equal(v[1].pixels[:, 0], [4, 5, 6, 7])  # the second temporal patch
    np.testing.assert_array_equal(i[0].pixels[:, 0], range(100, 108))
    b["meta"][0]["media"] = "frames"  # the release recipe: every frame an image
    assert [x.kind for x in inputs.blocks_of_row(b, 0)] == ["image", "image"]


def test_hf_media_splits_images_and_videos_in_token_order():
    b = _batch()
    blocks = [x for r in (1, 0, 1, 2) for x in inputs.blocks_of_row(b, r)]  # an image row repeated
    m = inputs.hf_media(blocks)
    np.testing.assert_array_equal(m["image_grid_thw"], [[1, 2, 4], [1, 2, 4]])
    np.testing.assert_array_equal(m["video_grid_thw"], [[1, 2, 2]] * 3)
    np.testing.assert_array_equal(m["second_per_grid_ts"], [0.5, 0.5, 1.0])  # video blocks only
    np.testing.assert_array_equal(m["pixel_values"][:, 0], list(range(100, 108)) * 2)
    np.testing.assert_array_equal(m["pixel_values_videos"][:, 0], list(range(0, 8)) + list(range(200, 204)))


@pytest.fixture(scope="module")
def ctx(qwen_tokenizer_dir):
    """The real Qwen2 tokenizer's ids (151643..)."""
    from visd_jax.models import Qwen25VLConfig

    tok = load_tokenizer(str(qwen_tokenizer_dir))
    sp = special_ids(tok)
    assert sp.video_pad == 151656
    ctx = RunContext.create(Qwen25VLConfig.preset("tiny"), sp, token_buckets=(16, 32),
                            vision=CanvasBuckets(((2, 4), (4, 4)), (1, 2, 4)), tokenizer=tok)
    return dataclasses.replace(ctx, patch_dim=5)  # _batch's 5-value patches


def _prompt(ctx, blocks, text=(5, 6)):
    sp = ctx.special
    ids = [*text]
    for blk in blocks:
        ids += [sp.vision_start] + [sp.video_pad if blk.kind == "video" else sp.image_pad] * (blk.h * blk.w // 4)
        ids += [sp.vision_end]
    return np.asarray(ids + [7], np.int32)


def test_rollout_rows_share_their_prompts_canvas_and_take_keeps_it(ctx):
    b = _batch(np.uint8)
    media = [inputs.blocks_of_row(b, r) for r in (0, 1)]
    prompts = [_prompt(ctx, m) for m in media]
    G, T = 3, 4
    tokens = np.arange(2 * G * T, dtype=np.int32).reshape(2 * G, T) % 50 + 10
    tmask = np.ones_like(tokens)
    rb = build_batch(ctx, [p for p in prompts for _ in range(G)], tokens, tmask, [r // G for r in range(2 * G)],
                     media)
    # 2 video blocks + 1 image, once each (not G times), in the smallest canvas and slot count
    assert rb.media.canvas == (2, 4) and rb.media.slots == 4 and rb.media.valid.sum() == 4 + 4 + 8
    assert rb.ids.shape == (2 * G, 16 + T) and rb.positions.shape == (3, 2 * G, 16 + T)
    for r in range(1, G):  # a prompt's rollouts read the same canvas tokens
        np.testing.assert_array_equal(rb.src[r], rb.src[0])
    assert (rb.src[:, 16:] == -1).all()  # completions are text
    assert set(rb.src[G][rb.src[G] >= 0] // 2) == {2}  # row G (the image) reads slot 2
    sub = rb.take(np.array([G, 0]))
    assert sub.media is rb.media  # media travel whole; src still points into them
    np.testing.assert_array_equal(sub.src, rb.src[[G, 0]])
    np.testing.assert_array_equal(sub.positions, rb.positions[:, [G, 0]])
    with pytest.raises(ValueError, match="one per row"):
        build_batch(ctx, prompts, tokens, tmask, [0, 1], media)
    with pytest.raises(ValueError, match="media runs"):  # a prompt whose tokens name no block
        build_batch(ctx, prompts[:1], tokens[:1], tmask[:1], [0], [[]])
