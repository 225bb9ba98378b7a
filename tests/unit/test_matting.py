"""Closed-form matting (Levin et al.) on scenes whose alpha is known: the sure regions kept exactly, a soft edge
recovered, the band's box only worked on, the prior's pull where nothing else decides, and the reduced solve of a
very wide band brought back by the guided filter."""

import numpy as np
import pytest
from layeringdiff.imaging.matting import MAX_UNKNOWN, _estimate_band, estimate_alpha, guided_filter


def ramp_scene(h: int, w: int, x0: int, x1: int):
    """Orange over blue with a linear alpha ramp from column x0 (1) to x1 (0): C = a F + (1 - a) B exactly."""
    alpha = np.clip((x1 - np.arange(w, dtype=np.float32)) / (x1 - x0), 0, 1)[None, :].repeat(h, 0)
    fg, bg = np.array([0.9, 0.5, 0.1], np.float32), np.array([0.1, 0.3, 0.8], np.float32)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return image.astype(np.float32), alpha


def trimap_of(alpha: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Sure foreground left of column lo, sure background from column hi, unknown between."""
    trimap = np.full(alpha.shape, 0.5, np.float32)
    trimap[:, :lo] = 1.0
    trimap[:, hi:] = 0.0
    return trimap


def test_a_trimap_without_unknown_pixels_is_its_own_alpha():
    trimap = np.zeros((20, 30), np.float32)
    trimap[5:15, 5:25] = 1.0
    out = estimate_alpha(np.random.default_rng(0).random((20, 30, 3)).astype(np.float32), trimap)
    assert out.dtype == np.float32 and np.array_equal(out, trimap)


def test_a_soft_edge_between_two_colours_is_recovered():
    image, alpha = ramp_scene(40, 80, 30, 50)
    trimap = trimap_of(alpha, 25, 55)
    out = estimate_alpha(image, trimap)
    assert np.array_equal(out[:, :25], alpha[:, :25]) and np.array_equal(out[:, 55:], alpha[:, 55:])
    assert np.abs(out - alpha).max() < 0.01


def test_only_the_band_s_box_is_worked_on_and_it_gives_what_the_whole_canvas_gives():
    image, alpha = ramp_scene(60, 400, 200, 212)
    trimap = trimap_of(alpha, 196, 216)
    trimap[:5] = trimap[-5:] = 0.0  # sure rows above and below: the band's box is inside the canvas both ways
    trimap[:5, :150] = trimap[-5:, :150] = 1.0
    whole = _estimate_band(image, trimap, None)  # no crop
    np.testing.assert_allclose(estimate_alpha(image, trimap), whole, atol=1e-5)


def test_the_prior_decides_where_no_sure_pixel_reaches():
    """A flat image, unknown all over: every alpha fits the colours, and the weak prior picks one."""
    image = np.full((16, 16, 3), 0.4, np.float32)
    trimap = np.full((16, 16), 0.5, np.float32)
    prior = np.full((16, 16), 0.8, np.float32)
    np.testing.assert_allclose(estimate_alpha(image, trimap, prior), 0.8, atol=1e-3)
    np.testing.assert_allclose(estimate_alpha(image, trimap), 0.5, atol=1e-3)  # no prior: the unknown's 0.5


def test_the_guided_filter_keeps_what_follows_the_guide_and_flattens_what_does_not():
    guide = np.random.default_rng(1).random((40, 50)).astype(np.float32)
    np.testing.assert_allclose(guided_filter(guide, 0.5 * guide + 0.2, 3, 1e-6), 0.5 * guide + 0.2, atol=2e-3)
    np.testing.assert_allclose(guided_filter(guide, np.full_like(guide, 0.3), 3, 1e-4), 0.3, atol=1e-5)
    flat = np.full((40, 50), 0.6, np.float32)
    src = np.zeros((40, 50), np.float32)
    src[:, 25:] = 1.0  # a step the flat guide does not explain: smoothed over the window (7 px)
    out = guided_filter(flat, src, 3, 1e-4)
    assert out[20, 10] == pytest.approx(0.0, abs=1e-5) and out[20, 40] == pytest.approx(1.0, abs=1e-5)
    assert 0.2 < out[20, 24] < 0.5 < out[20, 25] < 0.8


def test_a_band_too_wide_to_solve_at_full_size_is_solved_smaller_and_brought_back():
    side = 520
    image, alpha = ramp_scene(side, side, 100, 420)  # a 320 px ramp
    trimap = trimap_of(alpha, 80, 440)
    assert np.count_nonzero(trimap == 0.5) > MAX_UNKNOWN  # 360 x 520: the reduced path
    out = estimate_alpha(image, trimap)
    assert np.array_equal(out[:, :80], alpha[:, :80]) and np.array_equal(out[:, 440:], alpha[:, 440:])
    assert out.min() >= 0.0 and out.max() <= 1.0 and np.abs(out - alpha).max() < 0.05
