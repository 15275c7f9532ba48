"""Bucketed media (`models.canvas`): a block padded into a larger canvas, next to other
blocks, with garbage in the padding, gives the logits the exact-grid forward pass gives
(which tests/models/test_parity.py holds to transformers), and the host-built positions
equal the model's own get_rope_index."""
from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from visd_jax.models import Qwen25VL, Qwen25VLConfig
from visd_jax.models.canvas import Block, CanvasBuckets, canvas_slots, merged_slots, pack, token_layout
from visd_jax.models.rope import vision_hw_ids

TOL = 2e-5  # float32: only the reductions' order may differ


@pytest.fixture(scope="module")
def model():
    return Qwen25VL.create(Qwen25VLConfig.preset("tiny"), seed=3)


def test_canvas_slots_keep_every_patch_coordinate():
    for h, w, H, W in [(4, 6, 4, 6), (4, 6, 10, 8), (6, 2, 6, 14)]:
        block, canvas = vision_hw_ids(h, w, 2), vision_hw_ids(H, W, 2)
        np.testing.assert_array_equal(canvas[canvas_slots(h, w, H, W, 2)], block)
        # merged token j of the block is the merge unit holding its patches 4j..4j+3
        np.testing.assert_array_equal(merged_slots(h, w, H, W, 2), canvas_slots(h, w, H, W, 2)[::4] // 4)


def test_buckets_hold_every_aspect_and_fall_back_past_them():
    b = CanvasBuckets.for_area(600, 8)
    assert b.count == len(b.canvases) * len(b.slots) and b.slots == (1, 2, 3, 4, 6, 8)
    for h in range(2, 56, 2):  # every block of <= 600 patches with aspect within 1/5..5
        w = min(h * 5, 600 // h) // 2 * 2
        if w < 2 or h > 5 * w:
            continue
        H, W = b.canvas_for([(h, w)])
        assert (H, W) in b.canvases and H >= h and W >= w and H * W <= 1.7 * 600  # ratio 1.5, plus rounding to merge units
    assert b.canvas_for([(2, 120)]) == (16, 128)  # no canvas is wide enough: its own, rounded
    with pytest.raises(ValueError, match="multiples"):
        CanvasBuckets(((3, 4),), (1,))


def _prompt(cfg, rng, grids):
    """Rows of text with one run of placeholder tokens per block ('video' or 'image')."""
    rows, row_blocks, blocks = [], [], []
    for row in grids:
        ids, mine = [5, 6], []
        for kind, h, w in row:
            tok = cfg.video_token_id if kind == "video" else cfg.image_token_id
            ids += [cfg.vision_start_token_id] + [tok] * (h * w // 4) + [cfg.vision_end_token_id, 7]
            mine.append(len(blocks))
            blocks.append(Block(rng.integers(0, 256, (h * w, cfg.vision.patch_dim), dtype=np.uint8), h, w, kind,
                                seconds=0.5 + len(blocks)))
        rows.append(ids + [8, 9])
        row_blocks.append(mine)
    T = max(map(len, rows)) + 3
    ids = np.full((len(rows), T), 0, np.int32)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):  # left-padded, by different amounts
        ids[i, T - len(r):], mask[i, T - len(r):] = r, 1
    return ids, mask, row_blocks, blocks


def _packed(model, ids, mask, pos, media, src):
    graphdef, state = nnx.split(model)  # jitted: op-by-op the tower takes ~10x longer
    run = jax.jit(lambda st, *a: nnx.merge(graphdef, st).forward_packed(*a))
    return np.asarray(run(state, ids, mask, pos, media, src))


def _exact(model, ids, mask, row_blocks, blocks):
    order = [k for r in row_blocks for k in r]
    vid = [blocks[k] for k in order if blocks[k].kind == "video"]
    img = [blocks[k] for k in order if blocks[k].kind == "image"]
    kw = {}
    if vid:
        kw.update(pixel_values_videos=np.concatenate([b.pixels for b in vid]),
                  video_grid_thw=np.array([(1, b.h, b.w) for b in vid]),
                  second_per_grid_ts=np.array([b.seconds for b in vid], np.float32))
    if img:
        kw.update(pixel_values=np.concatenate([b.pixels for b in img]),
                  image_grid_thw=np.array([(1, b.h, b.w) for b in img]))
    graphdef, state = nnx.split(model)
    pix = {k: v for k, v in kw.items() if k.startswith("pixel")}
    run = jax.jit(lambda st, i, m, p: nnx.merge(graphdef, st)(
        i, attention_mask=m, **p, **{k: v for k, v in kw.items() if not k.startswith("pixel")}))
    return np.asarray(run(state, ids, mask, pix)), kw


def test_padded_media_give_the_exact_grid_logits(model):
    cfg = model.config
    rng = np.random.default_rng(0)
    # three aspect ratios, videos and images mixed, blocks shared by no row
    ids, mask, row_blocks, blocks = _prompt(cfg, rng, [
        [("video", 4, 6), ("video", 4, 6), ("image", 6, 4)],
        [("image", 2, 2), ("video", 6, 10)],
        [("video", 4, 6)]])
    want, kw = _exact(model, ids, mask, row_blocks, blocks)
    buckets = CanvasBuckets(((8, 8), (10, 12), (16, 16)), (4, 8))
    media = pack(blocks, buckets, patch_dim=cfg.vision.patch_dim)
    assert media.canvas == (10, 12) and media.slots == 8
    # garbage where no block is: it must move nothing
    media = media.replace(pixels=np.where(media.valid[..., None], media.pixels,
                                          rng.integers(0, 256, media.pixels.shape, dtype=np.uint8)))
    pos, src = token_layout(ids, mask, row_blocks, blocks, media.canvas, video_token_id=cfg.video_token_id,
                            image_token_id=cfg.image_token_id, merge=2,
                            tokens_per_second=cfg.vision.tokens_per_second)
    ref_pos, _ = model.rope_index(ids, mask, kw["video_grid_thw"], kw["second_per_grid_ts"],
                                  image_grid_thw=kw["image_grid_thw"])
    np.testing.assert_array_equal(pos, np.asarray(ref_pos))
    got = _packed(model, ids, mask, pos, media, src)
    np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)


def test_a_block_alone_equals_it_in_a_bigger_canvas(model):
    """The same video alone (exact canvas) and padded into a larger bucket: same logits."""
    cfg = model.config
    ids, mask, row_blocks, blocks = _prompt(cfg, np.random.default_rng(1), [[("video", 4, 6), ("video", 4, 6)]])
    outs = []
    for canvases in [((4, 6),), ((12, 14),)]:
        media = pack(blocks, CanvasBuckets(canvases, (2, 6)), patch_dim=cfg.vision.patch_dim)
        pos, src = token_layout(ids, mask, row_blocks, blocks, media.canvas, video_token_id=cfg.video_token_id,
                                image_token_id=cfg.image_token_id, merge=2,
                                tokens_per_second=cfg.vision.tokens_per_second)
        outs.append(_packed(model, ids, mask, pos, media, src))
    np.testing.assert_allclose(outs[1], outs[0], atol=TOL, rtol=TOL)


def test_shared_blocks_and_bad_layouts(model):
    cfg = model.config
    ids, mask, row_blocks, blocks = _prompt(cfg, np.random.default_rng(2), [[("video", 4, 4)]])
    two = np.concatenate([ids, ids])  # G = 2 rollouts of one prompt read one encoded block
    kw = dict(video_token_id=cfg.video_token_id, image_token_id=cfg.image_token_id, merge=2,
              tokens_per_second=cfg.vision.tokens_per_second)
    pos, src = token_layout(two, np.concatenate([mask, mask]), [[0], [0]], blocks, (4, 4), **kw)
    np.testing.assert_array_equal(src[0], src[1])
    with pytest.raises(ValueError, match="media runs"):
        token_layout(ids, mask, [[0, 0]], blocks, (4, 4), **kw)
    with pytest.raises(ValueError, match="not 2 tokens long"):
        token_layout(ids, mask, [[0]], [Block(blocks[0].pixels[:8], 2, 4, "video")], (4, 4), **kw)
    with pytest.raises(ValueError, match="together"):
        model.forward_packed(ids, mask, pos[:, :1], None, src[:1])
