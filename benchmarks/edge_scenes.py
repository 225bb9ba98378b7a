"""Generated scenes for the trimap's band rule: an object with soft edges of a known width over a photo, and the
selection an artist would make of it (feathered by some radius, a few pixels off). Used by
benchmarks/bench_band.py and tests/unit/test_band.py (evaluation data, not part of the installed package); the rule
was tuned on TUNING_SEEDS and is checked on others."""

from dataclasses import dataclass

import cv2
import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
TUNING_SEEDS = range(0, 60)
HELD_OUT_SEEDS = range(1000, 1024)
FIXED_WIDTHS = (15, 30, 45)


@dataclass
class EdgeScene:
    image: np.ndarray  # HxWx3 float32 composite
    alpha: np.ndarray  # HxW true alpha
    selection: np.ndarray  # HxW feathered selection, as Krita hands it over
    edge_width: float  # the object's soft edge (px, 10-90% of the ramp about 2.6 sigma)
    feather: float  # the selection's feather sigma (px)
    offset: float  # how far the selection's edge is off the object's (px, outwards positive)


def _blob(size: int, rng: np.random.Generator) -> np.ndarray:
    """A hard random smooth shape (a few overlapping ellipses) filling 15-40% of the canvas."""
    m = np.zeros((size, size), np.uint8)
    c = size / 2
    for _ in range(int(rng.integers(2, 5))):
        cy, cx = c + rng.uniform(-0.12, 0.12, 2) * size
        ax, ay = rng.uniform(0.12, 0.26, 2) * size
        cv2.ellipse(m, (int(cx), int(cy)), (int(ax), int(ay)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return m.astype(np.float32)


def edge_scene(seed: int, size: int = 512) -> EdgeScene:
    from layeringdiff.examples import photo

    rng = np.random.default_rng(seed)
    hard = _blob(size, rng)
    # the object's own edge: a blur of the hard shape (sigma 0.5-8 px), plus a few strands for some scenes
    sigma_e = float(rng.choice([0.5, 2.0, 4.0, 8.0]))
    alpha = cv2.GaussianBlur(hard, (0, 0), sigma_e)
    if rng.integers(2):
        strands = np.zeros((size * 4, size * 4), np.float32)
        ys, xs = np.nonzero(cv2.Canny((hard * 255).astype(np.uint8), 50, 150))
        for k in rng.choice(len(ys), size=min(len(ys), 30), replace=False):
            t = rng.uniform(0, 2 * np.pi)
            length = rng.uniform(8, 30) * 4
            p0 = np.array([xs[k], ys[k]]) * 4
            pts = np.int32([p0, p0 + length * np.array([np.cos(t), np.sin(t)])])
            cv2.polylines(strands, [pts], False, float(rng.uniform(0.5, 1.0)), thickness=3)
        alpha = np.maximum(alpha, cv2.resize(strands, (size, size), interpolation=cv2.INTER_AREA))
    alpha = np.clip(alpha, 0.0, 1.0)
    # the selection: the shape grown or shrunk by a few pixels, then feathered
    offset = float(rng.uniform(-6, 6))
    dist_in = cv2.distanceTransform(hard.astype(np.uint8), cv2.DIST_L2, 5)
    dist_out = cv2.distanceTransform(1 - hard.astype(np.uint8), cv2.DIST_L2, 5)
    signed = dist_in - dist_out  # > 0 inside
    moved = (signed > -offset).astype(np.float32)
    feather = float(rng.choice([2.0, 5.0, 10.0, 16.0]))
    selection = np.clip(cv2.GaussianBlur(moved, (0, 0), feather), 0.0, 1.0)
    names = rng.choice(len(PHOTOS), 2, replace=False)
    fg = cv2.resize(photo(PHOTOS[names[0]]), (size, size), interpolation=cv2.INTER_AREA)
    bg = cv2.resize(photo(PHOTOS[names[1]]), (size, size), interpolation=cv2.INTER_AREA)
    image = alpha[..., None] * fg + (1.0 - alpha[..., None]) * bg
    return EdgeScene(image.astype(np.float32), alpha.astype(np.float32), selection.astype(np.float32),
                     2.6 * sigma_e, feather, offset)


def edge_band(alpha: np.ndarray, grow: int = 2) -> np.ndarray:
    """Where the alpha error is measured: the true soft pixels (0 < alpha < 1), grown by `grow` px."""
    soft = ((alpha > 0.002) & (alpha < 0.998)).astype(np.uint8)
    return cv2.dilate(soft, np.ones((2 * grow + 1,) * 2, np.uint8)) > 0


def edge_error(estimate: np.ndarray, alpha: np.ndarray) -> float:
    """Mean |alpha error| x 255 in the true edge band."""
    band = edge_band(alpha)
    return float(np.abs(estimate - alpha)[band].mean() * 255.0)
