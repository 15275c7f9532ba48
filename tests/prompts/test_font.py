"""frame_numbers: every drawn digit is read back by template matching against the font."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from visd_jax.prompts import FONT, digit_scale, frame_numbers, hint, KINDS

RED = np.array([255, 0, 0])


def read_number(before, after):
    """Decode the red digits at the bottom-right using the documented layout."""
    changed = np.any(after != before, axis=-1)
    assert np.all(after[changed] == RED)
    rows, cols = np.nonzero(changed)
    h, w = changed.shape
    s = (rows.max() - rows.min() + 1) // 7  # every glyph spans all 7 rows
    margin = h - 1 - rows.max()
    assert margin == 2 * s and rows.min() == h - margin - 7 * s
    text = ""
    right = w - margin  # right edge of the last digit
    while right - 5 * s >= 0:
        cell = changed[h - margin - 7 * s : h - margin, right - 5 * s : right]
        if not cell.any():
            break
        small = cell[s // 2 :: s, s // 2 :: s]  # one sample per font pixel
        # the cell must be a clean s-times upscaled glyph
        np.testing.assert_array_equal(cell, np.kron(small, np.ones((s, s), bool)))
        scores = [(small == FONT[d]).sum() for d in range(10)]
        best = int(np.argmax(scores))
        assert scores[best] == 35 and sorted(scores)[-2] < 35
        text = str(best) + text
        right -= 6 * s
    assert not changed[:, : max(right, 0)].any()  # nothing else drawn
    return text, s


def test_font_glyphs_distinct():
    assert FONT.shape == (10, 7, 5)
    for a in range(10):
        for b in range(a + 1, 10):
            assert (FONT[a] != FONT[b]).any()
        assert FONT[a][0].any() and FONT[a][-1].any()  # spans the full glyph height


@pytest.mark.parametrize("mode", ["eager", "jit", "vmap"])
@pytest.mark.parametrize("hw", [(224, 420), (84, 112)])
def test_digits_are_read_back(mode, hw):
    h, w = hw
    numbers = np.array([0, 7, 42, 105, 999, 1234, -3])
    frames = np.random.default_rng(0).integers(0, 200, (len(numbers), h, w, 3), dtype=np.uint8)
    if mode == "eager":
        out = np.asarray(frame_numbers(jnp.asarray(frames), numbers))
    elif mode == "jit":
        out = np.asarray(jax.jit(frame_numbers)(jnp.asarray(frames), numbers))
    else:
        out = np.asarray(jax.vmap(frame_numbers)(jnp.asarray(frames)[None], numbers[None]))[0]
    for t, n in enumerate(numbers):
        text, s = read_number(frames[t], out[t])
        assert text == str(int(np.clip(n, 0, 999)))
        assert s == digit_scale(h) and abs(7 * s - h / 8) <= 7 / 2 + 1e-9


def test_too_small_frame():
    with pytest.raises(ValueError, match="digits at scale"):
        frame_numbers(jnp.zeros((1, 28, 16, 3), jnp.uint8), np.array([1]))
    with pytest.raises(ValueError, match="numbers must have shape"):
        frame_numbers(jnp.zeros((2, 56, 84, 3), jnp.uint8), np.array([1]))


def test_hints():
    from visd_jax.text.release import HINTS as RELEASE

    # raw and darken: the release's strings verbatim; the other three the paper's wording
    assert hint("raw") == RELEASE["raw"] and hint("darken") == RELEASE["darken"]
    assert hint("raw").startswith("\n[Hint: Carefully observe the key objects")
    for kind in KINDS:
        assert len(hint(kind)) > 40 and hint(kind)[0] in " \n"
    assert "darkened" in hint("darken") and "bright (highlighted) regions" in hint("darken")
    assert "red circle" in hint("circle")
    with pytest.raises(ValueError, match="unknown prompt kind"):
        hint("blur")
