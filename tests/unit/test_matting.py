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


# ---- exact references and what each step is given ---------------------------------------------------------------

def textured_scene(h: int = 40, w: int = 48, seed: int = 5):
    """A textured foreground over a textured background with a soft diagonal edge (C = a F + (1 - a) B)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    alpha = np.clip((xx - 0.5 * yy - 10) / 12, 0, 1)
    fg = 0.6 + 0.3 * rng.random((h, w, 3)).astype(np.float32) * np.array([1, 0.5, 0.2], np.float32)
    bg = 0.1 + 0.3 * rng.random((h, w, 3)).astype(np.float32) * np.array([0.2, 0.6, 1], np.float32)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return image.astype(np.float32), alpha


def closed_form_reference(image: np.ndarray, trimap: np.ndarray, prior: np.ndarray | None = None,
                          weight: np.ndarray | None = None) -> np.ndarray:
    """Levin et al.'s alpha with hard constraints, solved exactly on the whole canvas from pymatting's Laplacian
    (built for every pixel, as the band-only assembly must reproduce on the band); with `prior` and a `weight` per
    pixel, each unknown pixel also pulled towards its prior by its weight: (L + W) a = W prior - L_known f."""
    import scipy.sparse.linalg
    from layeringdiff.imaging.matting import EPSILON, RADIUS
    from pymatting import cf_laplacian

    lap = cf_laplacian(image.astype(np.float64), EPSILON, RADIUS).tocsr()
    unknown = (trimap == 0.5).ravel()
    known = ~unknown
    fixed = (trimap.ravel() >= 1.0).astype(np.float64)
    a = lap[unknown][:, unknown]
    b = -lap[unknown][:, known] @ fixed[known]
    if prior is not None:
        w = weight.ravel()[unknown].astype(np.float64)
        a = a + scipy.sparse.diags(w)
        b = b + w * prior.ravel()[unknown]
    alpha = fixed.copy()
    alpha[unknown] = scipy.sparse.linalg.spsolve(a.tocsc(), b)
    return np.clip(alpha.reshape(trimap.shape), 0, 1).astype(np.float32)


@pytest.mark.parametrize("where", ["inside", "at the canvas's edges"])
def test_the_band_only_solve_is_levin_et_al_s_closed_form_alpha(where):
    """The same alpha as the whole canvas's closed-form system (within the weak prior's and the solver's 1e-3):
    the windows that touch the band, their neighbours at the canvas's edges, and the known pixels' pull."""
    image, alpha = textured_scene()
    trimap = np.where(alpha >= 0.999, 1.0, np.where(alpha <= 0.001, 0.0, 0.5)).astype(np.float32)
    if where == "inside":  # a sure frame around the band
        trimap[:3], trimap[-3:], trimap[:, :3], trimap[:, -3:] = 0.0, 0.0, 0.0, 1.0
    out = estimate_alpha(image, trimap)
    assert out.dtype == np.float32
    assert np.abs(out - closed_form_reference(image, trimap)).max() < 1e-3


def test_the_prior_is_held_firmly_where_the_strands_are_and_weakly_elsewhere():
    """`firm` (the hint's strands, trimap_and_strands) sets STRAND_PRIOR_WEIGHT there and PRIOR_WEIGHT elsewhere:
    the whole canvas's system with those weights on the diagonal, solved exactly."""
    from layeringdiff.imaging.matting import PRIOR_WEIGHT, STRAND_PRIOR_WEIGHT

    image, alpha = textured_scene()
    trimap = np.where(alpha >= 0.999, 1.0, np.where(alpha <= 0.001, 0.0, 0.5)).astype(np.float32)
    trimap[:3], trimap[-3:], trimap[:, :3], trimap[:, -3:] = 0.0, 0.0, 0.0, 1.0
    prior = 1.0 - (alpha >= 0.5).astype(np.float32)  # a hint at odds with the picture: the weights show
    firm = np.zeros(alpha.shape, bool)
    firm[:20] = True
    weight = np.where(firm, STRAND_PRIOR_WEIGHT, PRIOR_WEIGHT)
    out = estimate_alpha(image, trimap, prior, firm)
    np.testing.assert_allclose(out, closed_form_reference(image, trimap, prior, weight), atol=1e-3)
    loose = estimate_alpha(image, trimap, prior)
    assert np.abs(out - loose)[:20].max() > 0.01 and np.abs(out - loose)[25:].max() < 0.01


def test_a_band_of_one_row_is_solved():
    image, alpha = textured_scene()
    trimap = (alpha >= 0.5).astype(np.float32)
    trimap[20, 8:40] = 0.5
    out = estimate_alpha(image, trimap)
    assert np.abs(out - closed_form_reference(image, trimap)).max() < 1e-3
    assert 0.1 < out[20, 8:40].mean() < 0.9  # solved, not left as the trimap's 0


def test_only_the_band_s_box_and_its_margin_reach_the_solver(monkeypatch):
    from layeringdiff.imaging import matting

    seen = []
    real = matting._estimate_band
    monkeypatch.setattr(matting, "_estimate_band",
                        lambda im, tri, *rest: seen.append(tri.shape) or real(im, tri, *rest))
    image, alpha = ramp_scene(300, 400, 200, 212)
    trimap = trimap_of(alpha, 196, 216)
    trimap[:100] = trimap[-100:] = 0.0  # the band: rows 100-199, columns 196-215
    trimap[:100, :150] = trimap[-100:, :150] = 1.0  # sure foreground far from the band, outside its box
    out = matting.estimate_alpha(image, trimap)
    margin = matting.BOX_MARGIN
    assert seen == [(100 + 2 * margin, 20 + 2 * margin)]
    assert out.dtype == np.float32 and np.all(out[:100, :150] == 1.0) and np.all(out[-100:, 300:] == 0.0)


@pytest.mark.parametrize("side", [520, 433])  # scale 0.67 (radius 3) and 0.80 (radius 2.5, rounded to 2)
def test_the_wide_band_is_solved_at_the_reduced_size_with_its_prior_and_refined_at_full_size(monkeypatch, side):
    from layeringdiff.imaging import matting

    solved, filtered = [], []
    real_solve, real_filter = matting._estimate_alpha, matting.guided_filter
    monkeypatch.setattr(matting, "_estimate_alpha", lambda im, tri, prior, weight: solved.append(
        (tri.shape, prior is not None and np.abs(prior - 0.8).max() < 1e-6, weight)) or real_solve(im, tri, prior))
    monkeypatch.setattr(matting, "guided_filter",
                        lambda g, s, r, e: filtered.append((g.shape, r)) or real_filter(g, s, r, e))
    image = np.full((side, side, 3), 0.4, np.float32)  # flat and all unknown: only the prior decides
    trimap = np.full((side, side), 0.5, np.float32)
    n = int(np.count_nonzero(trimap == 0.5))
    scale = np.sqrt(matting.MAX_UNKNOWN / n)
    out = matting.estimate_alpha(image, trimap, np.full((side, side), 0.8, np.float32))
    assert solved == [((round(side * scale), round(side * scale)), True, None)]
    assert filtered == [((side, side), max(2, round(2.0 / scale)))]
    assert np.abs(out - 0.8).max() < 0.02
    firm = np.zeros((side, side), bool)
    firm[:, : side // 2] = True  # the strands' zone: its weight comes down to the reduced size as its share
    solved.clear()
    matting.estimate_alpha(image, trimap, np.full((side, side), 0.8, np.float32), firm)
    weight = solved[0][2]
    assert weight.shape == solved[0][0]
    small = weight.shape[1]
    np.testing.assert_allclose(weight[:, : small // 2 - 1], matting.STRAND_PRIOR_WEIGHT, rtol=1e-5)
    np.testing.assert_allclose(weight[:, small // 2 + 1:], matting.PRIOR_WEIGHT, rtol=1e-5)


def test_the_guided_filter_is_he_et_al_s_with_square_windows_and_mirrored_borders():
    """Against the formula computed here: box means over (2r+1)^2 windows, borders mirrored (cv2.BORDER_REFLECT:
    the edge pixel repeated), a = cov / (var + eps)."""
    rng = np.random.default_rng(7)
    guide = (0.5 + 0.05 * rng.random((23, 31))).astype(np.float32)  # variance well under eps
    src = rng.random((23, 31)).astype(np.float32)
    r, eps = 2, 1e-2

    def box(x):
        p = np.pad(x.astype(np.float64), r, mode="symmetric")
        out = np.zeros(x.shape)
        for dy in range(2 * r + 1):
            for dx in range(2 * r + 1):
                out += p[dy:dy + x.shape[0], dx:dx + x.shape[1]]
        return out / (2 * r + 1) ** 2

    mean_i, mean_p = box(guide), box(src)
    a = (box(guide * src) - mean_i * mean_p) / (box(guide * guide) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    expected = box(a) * guide + box(b)
    np.testing.assert_allclose(guided_filter(guide, src, r, eps), expected, atol=2e-5)


def test_the_refined_wide_band_alpha_is_clipped_to_0_1(monkeypatch):
    """The guided filter can overshoot past 0 and 1 beside an edge the guide does not share (a ramp guide and a
    step: +-0.04); the band's alpha is clipped."""
    from layeringdiff.imaging import matting

    ramp = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (40, 1))
    step = (np.arange(40) >= 20).astype(np.float32)[None, :].repeat(40, 0)
    overshoot = matting.guided_filter(ramp, step, 3, 1e-4)
    assert overshoot.min() < -0.01 and overshoot.max() > 1.01
    monkeypatch.setattr(matting, "guided_filter", lambda g, s, r, e: np.resize(overshoot, g.shape))
    side = 520
    out = matting.estimate_alpha(np.full((side, side, 3), 0.4, np.float32), np.full((side, side), 0.5, np.float32))
    np.testing.assert_array_equal(out, np.clip(np.resize(overshoot, (side, side)), 0, 1))


def test_a_single_unknown_pixel_is_solved():
    image, alpha = textured_scene()
    trimap = (alpha >= 0.5).astype(np.float32)
    y, x = 20, int(np.argmin(np.abs(alpha[20] - 0.5)))  # on the soft edge
    trimap[y, x] = 0.5
    out = estimate_alpha(image, trimap)
    assert abs(out[y, x] - closed_form_reference(image, trimap)[y, x]) < 1e-3 and 0.05 < out[y, x] < 0.95


def test_a_band_of_exactly_max_unknown_pixels_is_solved_at_full_size(monkeypatch):
    from layeringdiff.imaging import matting

    solved = []
    real = matting._estimate_alpha
    monkeypatch.setattr(matting, "_estimate_alpha",
                        lambda im, tri, *rest: solved.append(tri.shape) or real(im, tri, *rest))
    monkeypatch.setattr(matting, "guided_filter", lambda *args: pytest.fail("the band was taken as too wide"))
    h, w = 300, matting.MAX_UNKNOWN // 300
    matting.estimate_alpha(np.full((h, w, 3), 0.4, np.float32), np.full((h, w), 0.5, np.float32))
    assert solved == [(h, w)]
