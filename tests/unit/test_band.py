"""The trimap's band rule for feathered selections (imaging/trimap.py), on generated scenes
(benchmarks/edge_scenes.py) whose seeds were used neither for tuning the rule nor by benchmarks/bench_band.py.

Expected widths are the documented rule (docs/offline-split.md) worked out by hand for each mask, never the module's
own constants: the band's half-width is 2% of the object's size (sqrt of its area at mask >= 0.5), rounded and
clamped to 2-80 px; a feathered selection (soft ramp 0.02..0.98 of at least 3 px per pixel of contour) gets at least
17 px, plus a quarter of its ramp beyond 20 px."""

import cv2
import numpy as np
import pytest
from layeringdiff.imaging.trimap import UNKNOWN, band_radius, selection_ramp, trimap_from_mask
from layeringdiff.progress import no_progress
from layeringdiff.stages.split import SplitOptions, split_alpha

from benchmarks.edge_scenes import FIXED_WIDTHS, HELD_OUT_SEEDS, TUNING_SEEDS, edge_error, edge_scene

TEST_SEEDS = range(5000, 5006)


def disk(size: int = 256, r: int = 70) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    cv2.circle(m, (size // 2, size // 2), r, 1.0, -1)
    return m


def test_test_seeds_are_apart_from_tuning_and_benchmark():
    assert not set(TEST_SEEDS) & (set(TUNING_SEEDS) | set(HELD_OUT_SEEDS))


@pytest.mark.slow
@pytest.mark.parametrize("seed", TEST_SEEDS)
def test_feathered_selection_alpha_within_1_3x_of_the_best_fixed_band(seed):
    scene = edge_scene(seed)
    error = {}
    for band in (None, *FIXED_WIDTHS):
        alpha = split_alpha(scene.image, scene.selection, None, SplitOptions(band=band), no_progress, {})
        error[band] = edge_error(alpha, scene.alpha)
    best = min(error[w] for w in FIXED_WIDTHS)
    assert error[None] <= 1.3 * best, (error, scene.feather, scene.edge_width, scene.offset)


def square(side: int, canvas: int) -> np.ndarray:
    m = np.zeros((canvas, canvas), np.float32)
    o = (canvas - side) // 2
    m[o:o + side, o:o + side] = 1.0
    return m


@pytest.mark.parametrize("side,canvas,radius", [
    (50, 100, 2),  # size 50: 2% is 1 px, raised to the 2 px minimum
    (100, 200, 2),  # size 100: 2 px
    (300, 400, 6),  # size 300: 6 px
    (1000, 1100, 20),  # size 1000: 20 px
    (4050, 4100, 80),  # size 4050: 81 px, held at the 80 px maximum
])
def test_a_hard_mask_gets_two_percent_of_its_size(side, canvas, radius):
    hard = square(side, canvas)
    assert selection_ramp(hard) == 0.0
    assert band_radius(hard) == radius


def test_a_hard_disk_gets_two_percent_of_the_root_of_its_area():
    hard = disk(512, 200)  # area about pi * 200^2 = 125,660 px, size 354.5 px: 7.09 px
    assert band_radius(hard) == 7


@pytest.mark.parametrize("side,ramp,radius", [
    (100, 2.9, 2),  # a ramp under 3 px is not a feather: 2% of 100 px
    (100, 3.1, 17),  # feathered: at least 17 px
    (100, 20.0, 17),  # the ramp adds nothing up to 20 px
    (100, 60.0, 27),  # 17 + (60 - 20) / 4
    (1000, 10.0, 20),  # 2% of 1000 px is already more than 17
    (1000, 60.0, 27),  # ... but less than 17 + (60 - 20) / 4
    (1000, 400.0, 80),  # 17 + 95 px, held at the 80 px maximum
])
def test_a_feathered_selection_gets_at_least_17_px_and_a_quarter_of_its_wide_ramp(side, ramp, radius):
    assert band_radius(square(side, side + 100), ramp) == radius


@pytest.mark.parametrize("sigma,radius", [(3.0, 17), (8.0, 20), (16.0, 28)])
def test_the_ramp_of_a_feathered_selection_is_measured(sigma, radius):
    feathered = cv2.GaussianBlur(disk(), (0, 0), sigma)
    # 0.02..0.98 of a Gaussian edge spans +-2.054 sigma; the disk's curvature takes a few percent off
    assert selection_ramp(feathered) == pytest.approx(4.1 * sigma, rel=0.06)
    # ramps about 12, 32 and 64 px: 17, 17 + 12 / 4 and 17 + 44 / 4 px (the disk's 2% is only 2.5 px)
    assert band_radius(feathered) == radius


def test_the_band_of_a_hard_mask_lies_either_side_of_its_edge():
    trimap = trimap_from_mask(square(300, 400))  # 6 px: the object spans columns 50..349
    row = trimap[200]
    assert np.array_equal(np.flatnonzero(row == UNKNOWN), np.r_[44:56, 344:356])
    assert np.all(row[56:344] == 1.0) and np.all(row[:44] == 0.0) and np.all(row[356:] == 0.0)


@pytest.mark.parametrize("sigma", [2.0, 4.0])
def test_the_automatic_band_covers_the_true_soft_edge_of_a_feathered_object(sigma):
    """Selected with its own soft edge as the selection, an object's alpha is wrong nowhere the trimap says it
    is known: the true soft pixels (+-2.9 sigma, up to 12 px here) all lie in the 17 px band."""
    alpha = cv2.GaussianBlur(disk(), (0, 0), sigma)
    trimap = trimap_from_mask(alpha)
    known = trimap != UNKNOWN
    assert np.abs(trimap[known] - alpha[known]).max() < 1 / 255
    soft = (alpha > 0.002) & (alpha < 0.998)
    assert not np.any(soft & known)


def test_the_band_of_a_feathered_selection_follows_its_middle_not_its_whole_ramp():
    feathered = cv2.GaussianBlur(disk(), (0, 0), 16.0)  # a 64 px ramp: a 28 px band (as above)
    row = trimap_from_mask(feathered)[128]
    assert abs(np.count_nonzero(row == UNKNOWN) / 2 - 2 * 28) <= 2  # two edges, 28 px either side of each
    ramp = (feathered[128] > 0.02) & (feathered[128] < 0.98)
    assert np.count_nonzero(ramp) > np.count_nonzero(row == UNKNOWN)
    # a band set by hand (the docker, --band) still leaves the whole ramp unknown
    assert np.all(trimap_from_mask(feathered, band=5)[128][ramp] == UNKNOWN)


def test_distance_band_matches_the_disk_erosion():
    mask = disk(200, 60)
    mask[90:110, 20:40] = 1.0  # a second, small part
    for r in (3, 10, 25):
        tri = trimap_from_mask(mask, band=r)
        hard = (mask >= 0.5).astype(np.uint8)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        fg = cv2.erode(hard, kernel) > 0
        bg = cv2.dilate(hard, kernel) == 0
        assert np.mean((tri == 1.0) != fg) < 0.005 and np.mean((tri == 0.0) != bg) < 0.005  # within a pixel
