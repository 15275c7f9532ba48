"""Host-side media assembly: videos and images of a batch's rows, apart and in order."""
import numpy as np

from visd_jax.training import inputs


def _batch():
    # row 0: video of 2 temporal patches on a 2x2 grid; row 1: image 2x4; row 2: video 1x2x2
    grids = np.array([[2, 2, 2], [1, 2, 4], [1, 2, 2]])
    patches = np.zeros((3, 8, 5), np.float32)
    for b, g in enumerate(grids):
        n = int(np.prod(g))
        patches[b, :n] = 100 * b + np.arange(n)[:, None]  # row b, patch i -> 100b + i
    return {"grid_thw": grids, "patches": patches, "second_per_grid": np.array([0.5, 0.0, 1.0], np.float32),
            "meta": [{"task": "temporal QA"}, {"task": "visual QA"}, {"task": "General video QA MCQ"}]}


def test_videos_only_keep_the_plain_grid():
    v = inputs.videos_for_rows(_batch(), [0, 2])
    assert v.grid == ((1, 2, 2), (1, 2, 2), (1, 2, 2))
    np.testing.assert_array_equal(v.seconds, [0.5, 0.5, 1.0])
    m = inputs.split_media(v.pixels, v.seconds, v.grid)
    assert set(m) == {"pixel_values_videos", "video_grid_thw", "second_per_grid_ts"}


def test_images_and_videos_split_in_row_order():
    b = _batch()
    v = inputs.videos_for_rows(b, [1, 0, 1, 2])  # an image row repeated (G samples)
    assert isinstance(v.grid, inputs.MediaGrid)
    assert v.grid.kinds == ("image", "video", "video", "image", "video")
    np.testing.assert_array_equal(v.seconds, [0.5, 0.5, 1.0])  # video blocks only
    m = inputs.split_media(v.pixels, v.seconds, v.grid)
    np.testing.assert_array_equal(m["image_grid_thw"], [[1, 2, 4], [1, 2, 4]])
    np.testing.assert_array_equal(m["video_grid_thw"], [[1, 2, 2], [1, 2, 2], [1, 2, 2]])
    np.testing.assert_array_equal(m["pixel_values"][:, 0], list(range(100, 108)) * 2)
    np.testing.assert_array_equal(m["pixel_values_videos"][:, 0], list(range(0, 8)) + list(range(200, 204)))
    # concatenating per-row media gives the same grid as assembling the rows at once
    parts = [inputs.videos_for_rows(b, [r]) for r in (1, 0, 1, 2)]
    c = inputs.concat_videos(parts)
    assert c.grid == v.grid
    np.testing.assert_array_equal(c.pixels, v.pixels)
    np.testing.assert_array_equal(c.seconds, v.seconds)


def test_sampler_prompts_carry_images_apart():
    b = _batch()
    b["input_ids"] = np.ones((3, 4), np.int32)
    b["attention_mask"] = np.ones((3, 4), np.int32)
    p = inputs.sampler_prompts(b, [1, 2], length=6, pad_id=0)
    np.testing.assert_array_equal(p.image_grid_thw, [[1, 2, 4]])
    np.testing.assert_array_equal(p.video_grid_thw, [[1, 2, 2]])
    assert p.pixel_values.shape == (8, 5) and p.pixel_values_videos.shape == (4, 5)
    np.testing.assert_array_equal(p.second_per_grid_ts, [1.0])


def test_pixel_dtype_is_kept_and_never_mixed():
    """uint8 pipeline pixels reach the model as uint8 (the vision tower normalises them);
    a cast to float would make the model read raw 0..255 values as normalised ones."""
    import pytest

    b = _batch()
    b["patches"] = b["patches"].astype(np.uint8)
    b["input_ids"] = np.ones((3, 4), np.int32)
    b["attention_mask"] = np.ones((3, 4), np.int32)
    v = inputs.videos_for_rows(b, [0, 1, 2])
    assert v.pixels.dtype == np.uint8
    p = inputs.sampler_prompts(b, [1, 2], length=6, pad_id=0)
    assert p.pixel_values.dtype == p.pixel_values_videos.dtype == np.uint8
    assert inputs.concat_videos([v, inputs.videos_for_rows(b, [2])]).pixels.dtype == np.uint8
    with pytest.raises(ValueError, match="dtypes"):
        inputs.concat_videos([v, inputs.videos_for_rows(_batch(), [2])])
