"""A record that fits its bucket raw but not with a visual prompt's hint is skipped by the
coach (and kept raw by SFT's prompted view), never fatal."""
import numpy as np

import data
from visd_jax import pipeline as P
from visd_jax.training import sft
from visd_jax.training.coach import prompted_batch


def test_prompted_rebuild_that_overflows_is_skipped_not_fatal(tmp_path):
    ds = data.generate(tmp_path, seed=6, num_clips=1)
    src = P.StgrSource(ds.annotations, ds.video_root)
    cfg = P.ExampleConfig(max_tokens=4096, max_patches=4096, max_frames=4, max_pixels=56 * 56, min_pixels=28 * 28)
    raw = [P.make_example(src[i], cfg) for i in range(2)]
    lengths = [len(e["input_ids"]) for e in raw]
    # room for the longer raw prompt, not for the shorter one plus a hint
    buckets = P.Buckets(tokens=(max(lengths) + 2,), patches=(4096,))
    metas = [{**e["meta"], "index": i} for i, e in enumerate(raw)]
    pb, ok = prompted_batch(src, metas, "darken", cfg, batch_size=3, buckets=buckets, max_frames=4, pad_id=1000)
    assert pb is None and not ok.any()  # the hint lengthens both past the bucket
    prompted = [len(P.make_example(src[i], P.ExampleConfig(**{**cfg.__dict__, "prompt": "darken"}))["input_ids"])
                for i in range(2)]
    assert prompted[0] != prompted[1] and min(prompted) > max(lengths)
    wide = P.Buckets(tokens=(sum(prompted) // 2,), patches=(4096,))  # only the shorter fits prompted
    pb, ok = prompted_batch(src, metas, "darken", cfg, batch_size=3, buckets=wide, max_frames=4, pad_id=1000)
    assert ok.tolist() == [x <= wide.tokens[0] for x in prompted] and ok.sum() == 1
    batch = P.pad_batch(raw, batch_size=2, buckets=P.Buckets(tokens=(4096,), patches=(4096,)), max_frames=4,
                        pad_id=1000)
    batch["meta"] = metas
    ids, media, kept_raw = sft.prompted_rows(batch, [0, 1], "darken", source=src, example_cfg=cfg, buckets=wide,
                                             max_frames=4, pad_id=1000)
    assert kept_raw == 1 and len(ids) == 2 and all(len(m) == 2 for m in media)  # 4 frames: 2 blocks each
    for i in range(2):
        if not ok[i]:
            np.testing.assert_array_equal(ids[i], raw[i]["input_ids"])
