"""Bounded compiles on videos of every shape (`data.varied`: 12 video grids of 4-16 frames in
three aspect ratios, plus images). A program compiles once per distinct signature of its
batch (`programs.signature`: what jit keys on); bucketed batches have a few signatures
however many shapes the data has, and a run's `compiles/<program>` metrics are its jit
caches' real sizes."""
import json

import numpy as np
import pytest

import data.varied
from visd_jax import pipeline as P
from visd_jax.models import Qwen25VLConfig
from visd_jax.models.canvas import CanvasBuckets
from visd_jax.text import load_tokenizer, special_ids
from visd_jax.training import inputs
from visd_jax.training.batch import RunContext, build_batch, prompt_batch
from visd_jax.training.programs import signature
from visd_jax.training.trainer import Trainer

VARIED = {"data.min_frames": 4, "data.max_frames": 16, "data.fps": 2.0,
          "data.max_pixels": data.varied.VARIED_MAX_PIXELS}


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    return data.varied.generate(tmp_path_factory.mktemp("varied"))


def test_random_batches_of_15_shapes_fall_in_a_few_buckets(varied, qwen_tokenizer_dir):
    ann, root = varied
    src = P.StgrSource(str(ann), str(root))
    cfg = P.ExampleConfig(tokenizer_dir=str(qwen_tokenizer_dir), fps=2.0, min_frames=4, max_frames=16,
                          max_pixels=data.varied.VARIED_MAX_PIXELS, min_pixels=28 * 28, max_tokens=2048,
                          max_patches=16 * 36)
    examples = [P.make_example(src[i], cfg) for i in range(len(src))]
    grids = [tuple(e["grid_thw"]) for e in examples]
    assert len(set(grids)) == 15 and {g[1:] for g in grids} >= {(4, 8), (6, 6), (6, 4)}
    assert {g[0] for g in grids} >= {2, 4, 6, 8}  # 4 to 16 frames
    sp = special_ids(load_tokenizer(str(qwen_tokenizer_dir)))
    vision = CanvasBuckets.for_area(data.varied.VARIED_MAX_PIXELS // 196, 48)
    ctx = RunContext.create(Qwen25VLConfig.preset("tiny"), sp, token_buckets=(512, 1024, 2048), vision=vision)
    rng = np.random.default_rng(0)
    exact, sample_sigs, learn_sigs = set(), set(), set()
    for _ in range(40):  # 40 steps of 3 prompts x G = 2 rollouts
        pick = rng.choice(len(examples), 3, replace=False)
        batch = P.pad_batch([examples[i] for i in pick], batch_size=3, buckets=P.Buckets((2048,), (16 * 36,)),
                            max_frames=16, pad_id=sp.pad)
        ids = inputs.prompt_ids_of(batch, range(3))
        media = [inputs.blocks_of_row(batch, b) for b in range(3)]
        exact.add(tuple(grids[i] for i in pick))  # what the exact-grid programs compiled for
        p = prompt_batch(ctx, ids, media)
        sample_sigs.add(signature((p.ids, p.media, p.src)))
        toks = np.ones((6, 8), np.int32)
        b = build_batch(ctx, [x for x in ids for _ in range(2)], toks, toks, [r // 2 for r in range(6)], media)
        learn_sigs.add(signature(b))
    assert len(exact) == 40
    bound = (vision.count + 1) * len(ctx.token_buckets)
    assert len(sample_sigs) <= 8 and len(learn_sigs) <= 8 and max(len(sample_sigs), len(learn_sigs)) <= bound


@pytest.mark.slow
def test_a_run_counts_its_real_compiles(make_config, varied):
    ann, root = varied
    cfg = make_config(mode="gspo", sft_steps=1, rl_steps=2, **VARIED, **{
        "data.source": "stgr", "data.annotations": str(ann), "data.video_root": str(root),
        "rl.max_new_tokens": 4, "rl.prompts_per_step": 3})
    tr = Trainer(cfg)
    tr.run()
    with open(tr.workdir / "metrics.jsonl") as f:
        last = [json.loads(line) for line in f][-1]
    compiles = {k.split("/", 1)[1]: v for k, v in last.items() if k.startswith("compiles/")}
    assert set(compiles) == {"sft_update", "sample", "score", "rl_update"}
    real = {}
    for (name, _), fn in tr.programs._fns.items():  # what jit really holds (the sampler's aside)
        real[name] = real.get(name, 0) + fn._cache_size()
    assert real == {k: v for k, v in compiles.items() if k != "sample"}
    assert all(n <= tr.programs._bounds[name] for name, n in compiles.items())
