"""The hidden background joins what is around it: the membrane (harmonic interpolation from the visible border) that
gives the hidden part its tone, the low-frequency matching that puts the texture fill on that tone, and, on a
generated scene (a brightness gradient with texture behind a large object whose rim is white and whose edge is
soft), no pale disc and no light outline, with either fill."""

import cv2
import numpy as np
import pytest
from layeringdiff.examples import photo
from layeringdiff.imaging.compose import exact_layers, unmix_background
from layeringdiff.imaging.foreground import estimate_foreground
from layeringdiff.imaging.membrane import harmonic_fill, match_low_frequencies
from layeringdiff.imaging.patchmatch import complete
from layeringdiff.stages.classical import (
    HIDDEN_ALPHA,
    SOURCE_ALPHA,
    UNMIX_ALPHA,
    background_guess,
    complete_background,
    smoothstep,
    texture_fill,
)
from layeringdiff.texture_metrics import border_region, border_tone, hidden_region, hidden_texture_metrics


def ellipse(h: int, w: int, axes: tuple[float, float], angle: float = 20.0) -> np.ndarray:
    hard = np.zeros((4 * h, 4 * w), np.uint8)
    cv2.ellipse(hard, (2 * w, 2 * h), (int(axes[0] * 4 * w), int(axes[1] * 4 * h)), angle, 0, 360, 1, -1)
    return cv2.resize(hard.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)


def ramp(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    return (0.2 + 0.5 * (0.7 * xx / w + 0.3 * yy / h))[..., None] * np.array([1.0, 0.75, 0.55], np.float32)


def rimmed_object_scene(texture: str, size: int = 256, feather: float = 3.0) -> tuple[np.ndarray, ...]:
    """(composite, alpha, true background): a brightness gradient carrying a photo's detail, behind an object
    (a third of the image) of dark red with a white rim and a white disc touching its top edge (a cup on a
    saucer), its edge feathered by `feather` px: the case where the multi-level estimate's coarse levels mix the
    object's colours into the background it guesses behind it."""
    tex = cv2.resize(photo(texture), (size, size), interpolation=cv2.INTER_AREA)
    bg = np.clip(ramp(size, size) + 0.8 * (tex - cv2.GaussianBlur(tex, (0, 0), 4)), 0, 1).astype(np.float32)
    body = ellipse(size, size, (0.42, 0.36)) > 0.5
    alpha = cv2.GaussianBlur(body.astype(np.float32), (0, 0), feather)
    depth = cv2.distanceTransform(body.astype(np.uint8), cv2.DIST_L2, 3)
    yy, xx = np.mgrid[:size, :size] / size
    white = (depth < 0.04 * size) | ((xx - 0.5) ** 2 + (yy - 0.3) ** 2 < 0.2 ** 2)
    fg = np.where(white[..., None], np.float32([0.97, 0.95, 0.92]), np.float32([0.55, 0.08, 0.05]))
    comp = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    return comp.astype(np.float32), alpha.astype(np.float32), bg


def lowpass(image: np.ndarray, sigma: float = 8.0) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


# --- the membrane


def test_harmonic_fill_continues_a_linear_gradient_and_keeps_the_known_pixels():
    """A linear function is harmonic: the membrane over a hole in a gradient is the gradient itself, at the full
    size and when the hole is big enough to be solved at a reduced size."""
    for size, radius in ((64, 20), (400, 150)):
        image = ramp(size, size)
        hole = ellipse(size, size, (radius / size, 0.7 * radius / size)) > 0
        start = image.copy()
        start[hole] = 0.0
        out = harmonic_fill(start, ~hole, max_pixels=2000)
        assert np.array_equal(out[~hole], image[~hole])
        assert np.abs(out - image)[hole].max() < (0.004 if size == 64 else 0.01)
        assert out.dtype == np.float32


def test_harmonic_fill_is_the_mean_of_its_border_not_of_what_the_hole_held():
    """Whatever the hole held (a white object) counts for nothing; a hole in a flat colour gets that colour, and
    the image border is free (a hole reaching it still takes the colour of its known border)."""
    image = np.full((80, 120, 3), [0.3, 0.2, 0.1], np.float32)
    hole = np.zeros((80, 120), bool)
    hole[10:70, 60:] = True  # open to the right edge of the image
    image[hole] = 1.0
    out = harmonic_fill(image, ~hole)
    assert np.allclose(out[hole], [0.3, 0.2, 0.1], atol=1e-4)


def test_harmonic_fill_without_any_known_pixel_is_the_mean():
    image = np.random.default_rng(0).uniform(0, 1, (20, 30, 3)).astype(np.float32)
    out = harmonic_fill(image, np.zeros((20, 30), bool))
    assert np.allclose(out, image.reshape(-1, 3).mean(axis=0), atol=1e-6)
    assert np.array_equal(harmonic_fill(image, np.ones((20, 30), bool)), image)


# --- low-frequency matching


def test_match_low_frequencies_takes_the_tone_and_keeps_the_detail_up_to_the_border():
    """A fill 0.2 too light with a fine checker: the offset goes, everywhere in the region including its border
    pixels (a correction that faded there would leave a light ring), the checker stays, outside is untouched."""
    h, w = 120, 160
    target = ramp(h, w)
    region = ellipse(h, w, (0.3, 0.3)) > 0.5
    yy, xx = np.mgrid[:h, :w]
    checker = np.where(((yy // 2 + xx // 2) % 2 == 0)[..., None], 0.05, -0.05).astype(np.float32)
    fill = target.copy()
    fill[region] += 0.2 + checker[region]
    for scale in (1, 4):
        given = fill.copy()
        out = match_low_frequencies(given, target, region, sigma=8.0, scale=scale)
        assert out is given  # in place: no full-size copy
        assert np.array_equal(out[~region], fill[~region])
        rim = region & (cv2.erode(region.astype(np.uint8), np.ones((5, 5), np.uint8)) == 0)
        for part in (region, rim):
            assert abs(float(np.mean((out - target)[part]))) < 0.01
        detail = (out - target)[region] - (out - target)[region].mean(axis=0)
        assert np.corrcoef(detail[:, 0], checker[region][:, 0])[0, 1] > 0.9


def test_complete_with_lowpass_sigma_keeps_the_starting_tone():
    """The exemplars are lighter than the start asks for: the texture comes back on the start's tone."""
    img = cv2.resize(photo("gravel"), (160, 128), interpolation=cv2.INTER_AREA)
    hole = ellipse(128, 160, (0.25, 0.25)) > 0
    start = img.copy()
    start[hole] = img[~hole].mean(axis=0) - 0.15  # the tone the caller wants there
    plain = complete(start, hole, seed=1)
    toned = complete(start, hole, seed=1, lowpass_sigma=4.0)
    assert np.array_equal(toned, complete(start, hole, seed=1, lowpass_sigma=4.0))
    assert np.array_equal(toned[~hole], img[~hole])
    want = float(start[hole].mean())
    assert abs(float(toned[hole].mean()) - want) < 0.02 < abs(float(plain[hole].mean()) - want)
    detail = lambda x: float(np.std((x - cv2.GaussianBlur(x, (0, 0), 2))[hole]))  # noqa: E731
    assert detail(toned) > 0.8 * detail(plain)


# --- the guess


def test_background_guess_is_unmixed_then_the_estimate_then_the_membrane():
    """One pass over the pixels (a numba kernel, on a crop view as the split passes it) that gives what the
    formulas say: exact un-mixing handing over to the multi-level estimate by UNMIX_ALPHA, then to the membrane
    of the clearly visible background by HIDDEN_ALPHA."""
    rng = np.random.default_rng(3)
    h, w = 90, 120
    image = rng.uniform(0, 1, (h + 4, w + 4, 3)).astype(np.float32)[2:-2, 2:-2]
    fg, bg_est = (rng.uniform(0, 1, (h, w, 3)).astype(np.float32) for _ in range(2))
    alpha = cv2.GaussianBlur((ellipse(h, w, (0.3, 0.3)) > 0.5).astype(np.float32), (0, 0), 4)
    guess = background_guess(image, alpha, fg, bg_est)
    t = smoothstep(alpha / UNMIX_ALPHA)[..., None]
    before = (1 - t) * np.clip(unmix_background(image, alpha, fg), 0, 1) + t * bg_est
    assert np.allclose(guess[alpha <= UNMIX_ALPHA], before[alpha <= UNMIX_ALPHA], atol=1e-5)
    membrane = harmonic_fill(before.astype(np.float32), alpha < SOURCE_ALPHA)
    m = smoothstep((alpha - UNMIX_ALPHA) / (HIDDEN_ALPHA - UNMIX_ALPHA))[..., None]
    assert np.allclose(guess, (1 - m) * before + m * membrane, atol=1e-4)
    assert guess.dtype == np.float32 and guess.shape == (h, w, 3)


# --- the border figure


def test_border_tone_sees_an_outline_that_lowpass_mad_dilutes():
    truth = ramp(200, 200)
    alpha = cv2.GaussianBlur((ellipse(200, 200, (0.35, 0.35)) > 0.5).astype(np.float32), (0, 0), 2)
    ring = border_region(alpha)
    assert ring.any() and not (ring & (alpha < 0.3)).any() and (ring & (alpha >= 0.95)).any()
    outlined = truth.copy()
    outlined[ring] += 0.1
    assert border_tone(truth, truth, alpha) == 0.0
    assert border_tone(outlined, truth, alpha) == pytest.approx(25.5, abs=0.1)
    m = hidden_texture_metrics(outlined, truth, alpha)
    assert m["border_tone"] == pytest.approx(25.5, abs=0.1) and m["lowpass_MAD"] < 10.0


# --- the scene


@pytest.mark.parametrize("texture", ["grass", "gravel"])
def test_hidden_background_takes_the_tone_around_it_without_an_outline(texture):
    """Behind a large object with a white rim and a soft edge, on a brightness gradient: the low-pass of the
    hidden part stays close to the harmonic interpolation of the visible border and the guess there is that
    membrane (the fills before it took a disc of another tone from the object's colours: 6.7-8.1 x 255 off, the
    guess up to 0.13 off), and the border has no ring of another tone (they: 3.4-4.7 x 255; now under 1)."""
    comp, alpha, bg = rimmed_object_scene(texture)
    fg_est, bg_est = estimate_foreground(comp, alpha)
    inner = hidden_region(alpha, erode=8)
    assert inner.sum() > 10000
    membrane = harmonic_fill(bg, alpha < SOURCE_ALPHA)  # what the visible border says, from the truth
    guess = background_guess(comp, alpha, fg_est, bg_est)
    assert np.abs(guess - membrane)[alpha >= 1.0].max() < 0.03  # the visible border is the composite there
    for fill in (None, texture_fill(alpha)):
        out = exact_layers(comp, alpha, fg_est, complete_background(comp, alpha, fg_est, bg_est, fill))[1]
        off = np.abs(lowpass(out) - lowpass(membrane))[inner].mean() * 255
        assert off < 2.5, (fill, off)
        assert border_tone(out, bg, alpha) < 2.0, fill
