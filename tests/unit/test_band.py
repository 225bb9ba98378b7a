"""The trimap's band rule for feathered selections (imaging/trimap.py), on generated scenes (edge_scenes.py) whose
seeds were used neither for tuning the rule nor by benchmarks/bench_band.py."""

import cv2
import numpy as np
import pytest
from layeringdiff.edge_scenes import FIXED_WIDTHS, HELD_OUT_SEEDS, TUNING_SEEDS, edge_error, edge_scene
from layeringdiff.imaging.trimap import (
    BAND_FRACTION,
    FEATHER_BAND_PER_RAMP,
    FEATHER_BAND_PX,
    FEATHER_RAMP_FREE_PX,
    UNKNOWN,
    band_radius,
    selection_ramp,
    trimap_from_mask,
)
from layeringdiff.progress import no_progress
from layeringdiff.stages.split import SplitOptions, split_alpha

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


@pytest.mark.parametrize("sigma", [3.0, 8.0, 16.0])
def test_the_ramp_of_a_feathered_selection_is_measured(sigma):
    feathered = cv2.GaussianBlur(disk(), (0, 0), sigma)
    # SOFT_LO..SOFT_HI of a Gaussian edge spans about +-2.05 sigma
    assert selection_ramp(feathered) == pytest.approx(4.1 * sigma, rel=0.15)
    wide = max(0.0, selection_ramp(feathered) - FEATHER_RAMP_FREE_PX)
    assert band_radius(feathered) == round(FEATHER_BAND_PX + FEATHER_BAND_PER_RAMP * wide)


def test_a_hard_selection_keeps_the_object_scaled_band():
    hard = disk(512, 200)
    assert selection_ramp(hard) < 1.5
    assert band_radius(hard) == round(BAND_FRACTION * np.sqrt(hard.sum()))


def test_the_band_of_a_feathered_selection_follows_its_middle_not_its_whole_ramp():
    feathered = cv2.GaussianBlur(disk(), (0, 0), 16.0)
    r = band_radius(feathered)
    row = trimap_from_mask(feathered)[128]
    assert abs(np.count_nonzero(row == UNKNOWN) / 2 - 2 * r) <= 2  # two edges, r either side of each
    ramp = (feathered[128] > 0.02) & (feathered[128] < 0.98)
    assert np.count_nonzero(ramp) > np.count_nonzero(row == UNKNOWN)
    # an Edge width set by hand (the docker, --band) still leaves the whole ramp unknown
    assert np.all(trimap_from_mask(feathered, radius=5)[128][ramp] == UNKNOWN)


def test_distance_band_matches_the_disk_erosion():
    mask = disk(200, 60)
    mask[90:110, 20:40] = 1.0  # a second, small part
    for r in (3, 10, 25):
        tri = trimap_from_mask(mask, radius=r)
        hard = (mask >= 0.5).astype(np.uint8)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        fg = cv2.erode(hard, kernel) > 0
        bg = cv2.dilate(hard, kernel) == 0
        assert np.mean((tri == 1.0) != fg) < 0.005 and np.mean((tri == 0.0) != bg) < 0.005  # within a pixel
