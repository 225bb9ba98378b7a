import numpy as np
import pytest
from layeringdiff.imaging.compose import (
    compose,
    compose_layers,
    composite_error,
    composite_stack,
    exact_layers,
    layer_alphas,
    least_change_layers,
    recomposition_error,
    unmix_background,
)


def random_layers(seed, shape=(32, 32)):
    rng = np.random.default_rng(seed)
    alpha = rng.uniform(0, 1, shape).astype(np.float32)
    alpha[:4] = 0.0
    alpha[-4:] = 1.0
    fg = rng.uniform(0, 1, shape + (3,)).astype(np.float32)
    bg = rng.uniform(0, 1, shape + (3,)).astype(np.float32)
    return alpha, fg, bg


def test_unmix_recovers_background_with_true_foreground():
    alpha, fg, bg = random_layers(0)
    comp = compose(alpha, fg, bg)
    visible = alpha < 0.99
    assert np.allclose(unmix_background(comp, alpha, fg)[visible], bg[visible], atol=1e-3)


@pytest.mark.parametrize("seed", range(5))
def test_exact_layers_reproduce_composite_from_any_guess(seed):
    alpha, fg, bg = random_layers(seed)
    comp = compose(alpha, fg, bg)
    rng = np.random.default_rng(100 + seed)
    fg_guess = rng.uniform(-0.2, 1.2, fg.shape).astype(np.float32)  # even bad, out-of-range guesses
    bg_guess = rng.uniform(-0.2, 1.2, bg.shape).astype(np.float32)
    f, b = exact_layers(comp, alpha, fg_guess, bg_guess)
    assert f.min() >= 0 and f.max() <= 1 and b.min() >= 0 and b.max() <= 1
    assert recomposition_error(comp, alpha, f, b) < 1e-5
    # copy-through: opaque foreground keeps the composite, clear pixels give it to the background
    assert np.array_equal(f[alpha == 1.0], comp[alpha == 1.0])
    assert np.array_equal(b[alpha == 0.0], comp[alpha == 0.0])


def test_exact_layers_keep_a_consistent_guess():
    alpha, fg, bg = random_layers(7)
    comp = compose(alpha, fg, bg)
    f, b = exact_layers(comp, alpha, fg, bg)
    inner = (alpha > 0.01) & (alpha < 0.99)
    assert np.allclose(b[inner], bg[inner], atol=1e-4)
    assert np.allclose(f[inner], fg[inner], atol=1e-3)


def test_least_change_hand_computed():
    # a = 0.5, C = 0.5, F = 0.8, B = 0.4: r = 0.5 - 0.4 - 0.2 = -0.1, a^2 + (1-a)^2 = 0.5,
    # F += 0.5 * -0.1 / 0.5 = -0.1 -> 0.7 and B += -0.1 -> 0.3 (0.5 * 0.7 + 0.5 * 0.3 = 0.5)
    # a = 0.8, C = 0.5, F = 0.5, B = 0.9: r = 0.5 - 0.4 - 0.18 = -0.08, norm 0.68,
    # F += 0.8 * -0.08 / 0.68, B += 0.2 * -0.08 / 0.68
    alpha = np.array([[0.5, 0.8]], np.float32)
    comp = np.full((1, 2, 3), 0.5, np.float32)
    fg = np.array([[[0.8] * 3, [0.5] * 3]], np.float32)
    bg = np.array([[[0.4] * 3, [0.9] * 3]], np.float32)
    f, b, fallback = least_change_layers(comp, alpha, fg, bg)
    assert np.allclose(f[0, 0], 0.7) and np.allclose(b[0, 0], 0.3)
    assert np.allclose(f[0, 1], 0.5 - 0.064 / 0.68) and np.allclose(b[0, 1], 0.9 - 0.016 / 0.68)
    assert fallback == 0.0 and recomposition_error(comp, alpha, f, b) < 1e-6
    # the projection would have kept B and put the whole residual into F
    fp, bp = exact_layers(comp, alpha, fg, bg)
    assert np.allclose(bp[0, 0], 0.4) and np.allclose(fp[0, 0], 0.6)


def test_least_change_falls_back_to_the_projection_only_where_clipping_breaks_it():
    # a = 0.5, C = 1, F = 0.2, B = 1: r = 0.4, F -> 0.6, B -> 1.4 clipped to 1: 0.8 != 1. The projection keeps
    # B = 1 (the only value allowed) and F = (1 - 0.5) / 0.5 = 1.
    alpha = np.array([[0.5, 0.5, 0.0, 1.0]], np.float32)
    comp = np.array([[[1.0] * 3, [0.5] * 3, [0.3] * 3, [0.6] * 3]], np.float32)
    fg = np.array([[[0.2] * 3, [0.8] * 3, [0.9] * 3, [0.1] * 3]], np.float32)
    bg = np.array([[[1.0] * 3, [0.4] * 3, [0.9] * 3, [0.7] * 3]], np.float32)
    f, b, fallback = least_change_layers(comp, alpha, fg, bg)
    assert np.allclose(f[0, 0], 1.0) and np.allclose(b[0, 0], 1.0)
    assert np.allclose(f[0, 1], 0.7) and np.allclose(b[0, 1], 0.3)  # untouched by the fallback
    assert fallback == 0.5  # one of the two mixed pixels
    # copy-through at a = 0 (B = C, F keeps its guess) and a = 1 (F = C, B keeps its guess)
    assert np.allclose(b[0, 2], 0.3) and np.allclose(f[0, 2], 0.9)
    assert np.allclose(f[0, 3], 0.6) and np.allclose(b[0, 3], 0.7)
    assert recomposition_error(comp, alpha, f, b) < 1e-6


@pytest.mark.parametrize("seed", range(3))
def test_least_change_holds_the_equation_for_any_guess_and_uses_the_foreground(seed):
    alpha, fg, bg = random_layers(seed)
    comp = compose(alpha, fg, bg)
    rng = np.random.default_rng(200 + seed)
    bg_guess = rng.uniform(-0.2, 1.2, bg.shape).astype(np.float32)
    f1, b1, share = compose_layers(comp, alpha, rng.uniform(0, 1, fg.shape).astype(np.float32), bg_guess)
    f2, b2, _ = compose_layers(comp, alpha, rng.uniform(0, 1, fg.shape).astype(np.float32), bg_guess)
    assert 0.0 <= share < 1.0
    for f, b in ((f1, b1), (f2, b2)):
        assert f.min() >= 0 and f.max() <= 1 and b.min() >= 0 and b.max() <= 1
        assert recomposition_error(comp, alpha, f, b) < 1e-5
    mixed = (alpha > 0.05) & (alpha < 0.95)
    assert np.abs(f1 - f2)[mixed].mean() > 0.05  # another foreground guess, another F
    # the projection ignores the foreground guess wherever it can
    p1, _, _ = compose_layers(comp, alpha, f1 * 0, bg_guess, "projection")
    p2, _, _ = compose_layers(comp, alpha, f1 * 0 + 1, bg_guess, "projection")
    assert np.abs(p1 - p2)[mixed].mean() < 1e-6
    with pytest.raises(ValueError, match="composition"):
        compose_layers(comp, alpha, fg, bg, "average")


def test_recomposition_error_ignores_hidden_pixels():
    alpha = np.array([[1.0, 0.5]], np.float32)
    comp = np.full((1, 2, 3), 0.5, np.float32)
    fg = np.full((1, 2, 3), 0.5, np.float32)
    bg = np.array([[[0.9] * 3, [0.5] * 3]], np.float32)
    assert recomposition_error(comp, alpha, fg, bg) == 0.0
    bg[0, 1] = 0.7
    assert recomposition_error(comp, alpha, fg, bg) == pytest.approx(0.1, abs=1e-6)


def over(top_rgb, top_a, bot_rgb, bot_a):
    out_a = top_a + bot_a * (1 - top_a)
    rgb = (top_rgb * top_a[..., None] + bot_rgb * (bot_a * (1 - top_a))[..., None]) / np.maximum(
        out_a, 1e-8)[..., None]
    return rgb, out_a


def test_layer_alphas_stack_back_to_a_semi_transparent_source():
    rng = np.random.default_rng(3)
    shape = (16, 16)
    layer_a = rng.uniform(0, 1, shape).astype(np.float32)
    layer_a[:2] = 1.0
    alpha, fg, bg = random_layers(4, shape)
    colour = compose(alpha, fg, bg)
    fa, ba = layer_alphas(layer_a, alpha)
    below = rng.uniform(0, 1, shape + (3,)).astype(np.float32)
    ones = np.ones(shape, np.float32)
    # source layer over an opaque canvas vs background then foreground over the same canvas
    want, _ = over(colour, layer_a, below, ones)
    mid_rgb, mid_a = over(bg, ba, below, ones)
    got, _ = over(fg, fa, mid_rgb, mid_a)
    assert np.abs(got - want).max() < 1e-4
    assert np.all(ba[layer_a == 1.0] == 1.0)


def test_job_info_is_made_plain_for_the_wire():
    import msgpack
    from layeringdiff.pipeline import plain

    info = {"crop": [np.int64(3), np.int32(4)], "err": np.float32(0.5), "arr": np.zeros(2), "nested": {"k": (1, 2)}}
    out = plain(info)
    want = {"crop": [3, 4], "err": 0.5, "arr": [0.0, 0.0], "nested": {"k": [1, 2]}}
    assert msgpack.unpackb(msgpack.packb(out)) == want


def test_layers_come_back_as_float32_copies_whatever_the_inputs():
    """The pipeline holds float32 layers (half the memory of float64) and never aliases its caller's arrays."""
    alpha, fg, bg = random_layers(5)
    comp = compose(alpha, fg, bg).astype(np.float64)
    for composition in ("least-change", "projection"):
        f, b, _ = compose_layers(comp, alpha.astype(np.float64), fg.astype(np.float64), bg.astype(np.float64),
                                 composition)
        assert f.dtype == b.dtype == np.float32
    fa, ba = layer_alphas(alpha.astype(np.float64), alpha.astype(np.float64))
    assert fa.dtype == ba.dtype == np.float32
    from layeringdiff.imaging.compose import extend_foreground

    for visible in (np.ones(alpha.shape, bool), np.zeros(alpha.shape, bool), alpha > 0.5):
        out = extend_foreground(fg.astype(np.float64), visible)
        assert out.dtype == np.float32 and np.allclose(out[visible], fg[visible])
    same = extend_foreground(fg, np.ones(alpha.shape, bool))
    assert np.array_equal(same, fg) and not np.shares_memory(same, fg)
    assert np.array_equal(extend_foreground(fg, np.zeros(alpha.shape, bool)), fg)  # nothing to extend from: kept


def test_alpha_at_the_thresholds_copies_the_composite_through():
    """a <= 1e-4 is pure background (B = C), a >= 1 - 1e-4 opaque foreground (F = C): the documented bounds."""
    alpha = np.array([[1e-4, 1 - 1e-4, 0.5]])
    comp = np.full((1, 3, 3), 0.3)
    f, b, share = compose_layers(comp, alpha, np.full((1, 3, 3), 0.9), np.full((1, 3, 3), 0.1))
    assert np.allclose(b[0, 0], 0.3) and np.allclose(f[0, 1], 0.3)
    assert not np.allclose(f[0, 0], 0.3) and not np.allclose(b[0, 1], 0.3)  # the other layer keeps its guess
    _, _, share = compose_layers(comp, np.array([[0.0, 1.0, 1.0]]), comp, comp)
    assert share == 0.0  # no mixed pixel, nothing fell back
    assert compose_layers(comp, alpha, comp, comp, "projection")[2] == 1.0


def test_recomposition_error_is_zero_with_no_visible_background_and_counts_from_its_bound():
    comp, fg, bg = np.full((1, 1, 3), 0.5), np.full((1, 1, 3), 0.5), np.full((1, 1, 3), 0.0)
    assert recomposition_error(comp, np.ones((1, 1)), fg, bg) == 0.0
    assert recomposition_error(comp, np.full((1, 1), 0.5), fg, bg, eps=0.5) == 0.0  # a = 1 - eps: hidden
    assert recomposition_error(comp, np.full((1, 1), 0.5), fg, bg, eps=0.4) == pytest.approx(0.25)


def test_a_nearly_opaque_source_leaves_a_complete_background():
    """a_B = 1 where the source layer is opaque within 1e-4, whatever the split's alpha."""
    fa, ba = layer_alphas(np.full((1, 2), 1 - 5e-5), np.array([[0.5, 1.0]]))
    assert ba.tolist() == [[1.0, 1.0]] and np.allclose(fa, [[0.5, 1.0]], atol=1e-4)


def test_composite_stack_by_hand():
    """Front first, uint8 and float layers mixed, over an RGBA and an RGB background: the values worked out by
    hand with C = a F + (1 - a) B, back to front, and the alpha a + (1 - a) A_below."""
    background = np.array([[[0.2, 0.4, 0.6, 0.5]]], np.float32)
    kept = background.copy()
    front = np.array([[[1.0, 0.0, 0.0, 0.5]]], np.float32)
    back = np.array([[[0, 255, 0, 51]]], np.uint8)  # alpha 0.2
    # back: 0.2 (0, 1, 0) + 0.8 (0.2, 0.4, 0.6) = (0.16, 0.52, 0.48), alpha 0.2 + 0.8 * 0.5 = 0.6
    # front: 0.5 (1, 0, 0) + 0.5 (0.16, 0.52, 0.48) = (0.58, 0.26, 0.24), alpha 0.5 + 0.5 * 0.6 = 0.8
    out = composite_stack([front, back], background)
    assert out.dtype == np.float32 and out.shape == (1, 1, 4)
    np.testing.assert_allclose(out[0, 0], [0.58, 0.26, 0.24, 0.8], atol=1e-6)
    np.testing.assert_array_equal(background, kept)  # the caller's background is not changed
    rgb = composite_stack([front, back], background[..., :3].astype(np.float64))
    assert rgb.dtype == np.float32 and rgb.shape == (1, 1, 3)
    np.testing.assert_allclose(rgb[0, 0], [0.58, 0.26, 0.24], atol=1e-6)
    np.testing.assert_array_equal(composite_stack([], background), background)


def test_composite_error_compares_what_is_shown_premultiplied():
    """A half-transparent source split into a front layer (a_F = a L) and the background (a_B = L (1 - a) / (1 - a L),
    layer_alphas): "over" gives the source back exactly, and a fully transparent pixel's stored colour (black in the
    source, anything in the layers) does not count; a wrong alpha or a wrong visible colour does."""
    source = np.array([[[0.8, 0.4, 0.2, 0.5], [0.0, 0.0, 0.0, 0.0]]], np.float32)
    a = np.array([[0.6, 0.0]], np.float32)
    fa, ba = layer_alphas(source[..., 3], a)
    fg_colour = np.array([[[1.0, 0.5, 0.0], [0.3, 0.3, 0.3]]], np.float32)
    bg_colour = (source[..., :3] - a[..., None] * fg_colour) / (1 - a[..., None])  # C = a F + (1 - a) B
    bg_colour[0, 1] = [0.9, 0.9, 0.9]  # under a transparent pixel: anything
    front = np.dstack([fg_colour, fa])
    background = np.dstack([bg_colour, ba])
    assert composite_error([front], background, source) < 1e-6
    # the straight colours compared as they are stored: the transparent pixel's 0.9 against its 0 counts
    assert np.abs(composite_stack([front], background)[..., :3] - source[..., :3]).max() > 0.5
    shown = background.copy()
    shown[0, 0, 3] += 0.1  # what the pixel shows of the background: wrong
    assert abs(composite_error([front], shown, source) - (1 - 0.6 * 0.5) * 0.1) < 1e-6  # the alpha's error
    assert composite_error([front], background[..., :3], source) > 0.4  # an opaque background: alpha 1, not 0.5
    opaque = np.dstack([source[..., :3], np.ones((1, 2), np.float32)])
    assert composite_error([], opaque, source[..., :3]) == 0.0
