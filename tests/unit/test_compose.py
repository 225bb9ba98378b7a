import numpy as np
import pytest
from layeringdiff.imaging.compose import (
    compose,
    exact_layers,
    layer_alphas,
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
