import numpy as np
from layeringdiff.imaging.inpaint import inpaint


def test_fill_keeps_visible_pixels_and_follows_surroundings():
    h, w = 64, 96
    ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :, None].repeat(h, 0).repeat(3, 2)
    hole = np.zeros((h, w), bool)
    hole[20:44, 30:60] = True
    damaged = ramp.copy()
    damaged[hole] = [1.0, 0.0, 1.0]  # a loud colour that must not survive
    out = inpaint(damaged, hole)
    assert np.array_equal(out[~hole], ramp[~hole])
    assert np.abs(out[hole] - ramp[hole]).mean() < 0.08  # the smooth ramp continues through the hole
    assert np.abs(out[hole][:, 0] - out[hole][:, 1]).max() < 0.05  # no magenta left: channels stay grey


def test_fill_constant_surroundings_is_exact_and_odd_sizes_work():
    img = np.full((37, 53, 3), 0.25, np.float32)
    hole = np.zeros((37, 53), bool)
    hole[5:30, 7:50] = True
    img[hole] = 0.9
    out = inpaint(img, hole)
    assert np.allclose(out, 0.25, atol=1e-5)


def test_degenerate_holes():
    img = np.random.default_rng(0).uniform(0, 1, (8, 8, 3)).astype(np.float32)
    assert np.array_equal(inpaint(img, np.zeros((8, 8), bool)), img)
    full = inpaint(img, np.ones((8, 8), bool))
    assert np.allclose(full, img.mean())
