"""The completion itself (`complete`): the pyramid, the levels' EM (PatchMatch then vote, coarse to fine), the
texture energy and guide channels, and the full size from the working level. Its numba kernels are in field.py (the
nearest-neighbour field) and vote.py (pixels from the field)."""

import cv2
import numpy as np

from ..inpaint import inpaint
from ..membrane import match_low_frequencies
from .field import _distances, _onion_init, _patchmatch, _random_init, _upsample_nnf
from .vote import _pick_up, _vote, _vote_up

PATCH_RADIUS = 3  # 7x7 patches
# Hole pixels at the finest EM level (the working size); the full size is voted straight from its field.
MAX_WORK_PIXELS = 15_000
# The coarsest level: the hole's thickness (twice its largest distance to a known pixel) about this many patches.
COARSE_THICKNESS = 3.0
MIN_LEVEL_SIDE = 24  # no level smaller than this (pixels)
EM_ITERS_COARSE = 6  # EM iterations at the coarsest level, decreasing to EM_ITERS_FINE at the working size
EM_ITERS_FINE = 2
PM_ITERS = 2  # PatchMatch passes per EM iteration
MIN_SOURCE_CENTRES = 64  # fewer valid exemplar patches than this: the caller keeps its own fill
ONION_DRAWS = 32  # uniform draws per pixel of the onion-peel start
ONION_COHERENCE = 0.8  # a neighbour's copy continued counts this much of its distance (runs, not a mosaic)
# Texture energy (Newson et al. 2014) as an extra voted channel: the local mean gradient magnitude, measured
# FEATURE_LEVELS_FINER levels finer than the working size and spread into the hole from around it. Coarse levels
# see how busy the fine texture is, so a hole in a textured area is not rebuilt from flat patches.
FEATURE_WEIGHT = 10.0
FEATURE_SIGMA = 2.0
FEATURE_LEVELS_FINER = 2
# The starting (smooth) fill, blurred, as fixed guide channels: the completion keeps its colour layout, which the
# smooth fill gets right on average, and puts the texture on it.
GUIDE_WEIGHT = 1.0
GUIDE_SIGMA = 2.0
# Occurrence penalty (Kaspar et al. 2015): using a source cell of OCCURRENCE_CELL^2 pixels as often as an even
# spread would costs this RMS difference per patch value, so the hole does not collapse onto a few patches.
OCCURRENCE_RMS = 0.015
OCCURRENCE_CELL = 4
# The last vote when the working size is the full size: the better matches weigh more, and only 3x3 of them
# (measured sharper than 7x7: hf 0.84 -> 0.90 on the tuning set, and closer in patch_SW).
FINAL_PERCENTILE = 25.0
FINAL_RADIUS = 1
# Above the working size, the pick (_pick_up): weight of the agreement with the working level's result against
# the continuation of the neighbours, and rows per parallel band.
PICK_LOWPASS = 1.0
PICK_BAND = 256


def _square(radius: int) -> np.ndarray:
    return np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)


def _valid_centres(hole: np.ndarray, source: np.ndarray, r: int) -> np.ndarray:
    """Centres of the patches that lie wholly in the source, outside the hole and inside the image."""
    h, w = hole.shape
    valid = cv2.erode((source & ~hole).astype(np.uint8), _square(r), borderValue=0) > 0
    valid[:r] = valid[h - r:] = False
    valid[:, :r] = valid[:, w - r:] = False
    return valid


class _Level:
    """One pyramid level: the image, its hole, the patch centres to match and the valid exemplar centres.
    `image` (float32, C order) is the level's own: the vote writes into it (a copy is taken of any other)."""

    def __init__(self, image: np.ndarray, hole: np.ndarray, source: np.ndarray, r: int, n_vote: int = 0,
                 valid: np.ndarray | None = None) -> None:
        h, w = hole.shape
        self.n_vote = n_vote or image.shape[2]  # channels rebuilt by the vote; the rest guide the matching
        self.image = np.ascontiguousarray(image, np.float32)  # memory: at full size a 7-channel copy is 28 B a pixel
        self.hole = hole
        self.hy, self.hx = (a.astype(np.int64, copy=False) for a in np.nonzero(hole))
        targets = cv2.dilate(hole.astype(np.uint8), _square(r)) > 0  # every patch that overlaps the hole
        self.ty, self.tx = (a.astype(np.int64, copy=False) for a in np.nonzero(targets))
        self.valid = _valid_centres(hole, source, r) if valid is None else valid
        self.vy, self.vx = (a.astype(np.int64, copy=False) for a in np.nonzero(self.valid))
        self.nny = np.full((h, w), -1, np.int64)
        self.nnx = np.full((h, w), -1, np.int64)
        self.dist = np.zeros((h, w), np.float64)


def _vote_weights(level: _Level, percentile: float = 75.0) -> np.ndarray:
    """Wexler et al.: patches that match well count more (Gaussian in their distance, scaled per level)."""
    d = level.dist[level.ty, level.tx]
    sigma2 = max(float(np.percentile(d, percentile)), 1e-9)
    weight = np.zeros(level.dist.shape, np.float64)
    weight[level.ty, level.tx] = np.exp(-d / (2.0 * sigma2))
    return weight


def _occurrence(level: _Level, r: int) -> tuple[np.ndarray, float]:
    """Use counts of each source cell by the current field, and the weight that makes using a cell at the even
    rate (targets spread over all valid centres) cost an RMS difference of OCCURRENCE_RMS per patch value."""
    h, w = level.valid.shape
    occ = np.zeros((h // OCCURRENCE_CELL + 1, w // OCCURRENCE_CELL + 1), np.float64)
    used = (level.nny[level.ty, level.tx] // OCCURRENCE_CELL, level.nnx[level.ty, level.tx] // OCCURRENCE_CELL)
    np.add.at(occ, used, 1.0)
    even = level.ty.size * OCCURRENCE_CELL ** 2 / max(level.vy.size, 1)
    values = (2 * r + 1) ** 2 * level.image.shape[2]
    return occ, OCCURRENCE_RMS ** 2 * values / max(even, 1e-6)


def _em(level: _Level, iters: int, pm_iters: int, radius: int, seed: int, r: int) -> None:
    for it in range(iters):
        _distances(level.image, level.ty, level.tx, level.nny, level.nnx, level.dist, r)
        occ, occ_weight = _occurrence(level, r)
        _patchmatch(level.image, level.ty, level.tx, level.valid, level.vy, level.vx, level.nny, level.nnx,
                    level.dist, r, pm_iters, radius, seed * 1000 + it, occ, occ_weight, OCCURRENCE_CELL)
        _vote(level.image, level.hy, level.hx, level.nny, level.nnx, _vote_weights(level), r, level.image,
              level.n_vote)


def _plan(hole: np.ndarray, r: int) -> tuple[int, int]:
    """(finest, coarsest) level of the EM, as powers of two below the full size: the finest keeps at most
    MAX_WORK_PIXELS hole pixels, the coarsest leaves the hole about COARSE_THICKNESS patches thick."""
    n = int(np.count_nonzero(hole))
    finest = max(0, int(np.ceil(0.5 * np.log2(max(n, 1) / MAX_WORK_PIXELS))))
    depth = cv2.distanceTransform(np.pad(hole, 1).astype(np.uint8), cv2.DIST_L2, 3).max()
    coarsest = max(finest, int(np.floor(np.log2(max(2 * depth / (COARSE_THICKNESS * (2 * r + 1)), 1.0)))))
    while coarsest > finest and min(hole.shape) / 2 ** coarsest < MIN_LEVEL_SIDE:
        coarsest -= 1
    return finest, coarsest


def _pyramid(colour: np.ndarray, hole: np.ndarray, source: np.ndarray, levels: int) -> list[tuple]:
    """(image, hole, source) at halving sizes: a coarse pixel is hole if any of its pixels is, source if all are."""
    out = [(colour, hole, source)]
    for _ in range(levels):
        c, hl, sr = out[-1]
        size = (max(1, (c.shape[1] + 1) // 2), max(1, (c.shape[0] + 1) // 2))
        small = cv2.resize(c, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
        s_hole = cv2.resize(hl.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
        s_source = cv2.resize(sr.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 1.0 - 1e-6
        out.append((small, s_hole, s_source & ~s_hole))
    return out


def texture_energy(image: np.ndarray, known: np.ndarray, sigma: float = FEATURE_SIGMA) -> np.ndarray:
    """Local mean of the luma's gradient magnitude over known pixels, filled smoothly elsewhere."""
    y = np.ascontiguousarray(image.mean(axis=2), np.float32)
    mag = np.abs(cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=1)) + np.abs(cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=1))
    ok = (cv2.erode(known.astype(np.uint8), _square(1), borderValue=0) > 0).astype(np.float32)
    num = cv2.GaussianBlur(mag * ok, (0, 0), sigma)
    den = cv2.GaussianBlur(ok, (0, 0), sigma)
    energy = num / np.maximum(den, 1e-6)
    return inpaint(energy[..., None], den < 0.5)[..., 0]


def complete(image: np.ndarray, hole: np.ndarray, source: np.ndarray | None = None, seed: int = 0,
             lowpass_sigma: float = 0.0) -> np.ndarray:
    """Fill `hole` (HxW bool) of `image` (HxW or HxWxC float32) from exemplar patches lying wholly in `source`
    (default: outside the hole). The hole's current values are the starting guess at the coarsest level (a
    smooth fill is a good one) and, blurred, a guide for the matching. `lowpass_sigma` > 0 (in pixels of the
    working size): the result keeps the texture's detail and takes its low frequencies from the starting guess
    (membrane.match_low_frequencies), so the guess's tone holds up to the hole's border even where the copied
    patches come from lighter or darker parts of the source. Returns a new image; outside the hole it equals the
    input. Deterministic for a seed. A source too thin for the coarse levels starts at the first level where it
    holds MIN_SOURCE_CENTRES whole patches; with none at any level the input comes back unchanged."""
    image = np.ascontiguousarray(image, np.float32)
    out = image.copy()
    if not hole.any():
        return out
    source = ~hole if source is None else source & ~hole
    colour = out[..., None] if image.ndim == 2 else out
    channels = colour.shape[2]
    r = PATCH_RADIUS
    finest, coarsest = _plan(hole, r)
    pyramid = _pyramid(colour, hole, source, coarsest)
    # texture energy a little finer than the working size, where the fine texture still shows
    e_level = max(0, finest - FEATURE_LEVELS_FINER)
    energy = FEATURE_WEIGHT * texture_energy(*pyramid[e_level][::2])
    energies = {e_level: energy}
    for k in range(e_level + 1, coarsest + 1):
        c = pyramid[k][0]
        energies[k] = cv2.resize(energies[k - 1], (c.shape[1], c.shape[0]), interpolation=cv2.INTER_AREA)
    prev: _Level | None = None
    prev_k = coarsest
    for k in range(coarsest, -1, -1):
        if k < finest and prev is not None:
            break
        img, hl, sr = pyramid[k]
        valid = _valid_centres(hl, sr, r)  # memory: before the level's arrays, which a level without source skips
        if np.count_nonzero(valid) < MIN_SOURCE_CENTRES:
            if prev is None:
                continue  # a thin band of source vanishes at coarse levels: start finer
            break
        if k not in energies:  # a start finer than the energy's level (a thin band of source)
            energies[k] = cv2.resize(energy, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
        guide = GUIDE_WEIGHT * cv2.GaussianBlur(img, (0, 0), GUIDE_SIGMA).reshape(img.shape)
        level = _Level(np.dstack([img, energies[k], guide]), hl, sr, r, channels + 1, valid)
        del guide
        if prev is None:
            _random_init(level.ty, level.tx, level.vy, level.vx, level.nny, level.nnx, seed)
            _onion_init(level.image, level.hole, level.valid, level.vy, level.vx, level.nny, level.nnx, r, seed,
                        ONION_DRAWS, level.n_vote, ONION_COHERENCE)
        else:
            _upsample_nnf(level.ty, level.tx, prev.nny, prev.nnx, level.valid, level.vy, level.vx,
                          level.nny, level.nnx, seed + k)
            _distances(level.image, level.ty, level.tx, level.nny, level.nnx, level.dist, r)
            _vote(level.image, level.hy, level.hx, level.nny, level.nnx, _vote_weights(level), r, level.image,
                  level.n_vote)
        span = max(coarsest - finest, 1)
        iters = round(EM_ITERS_FINE + (EM_ITERS_COARSE - EM_ITERS_FINE) * max(k - finest, 0) / span)
        _em(level, iters, PM_ITERS, max(level.hole.shape), seed + 7919 * k, r)
        prev, prev_k = level, k
    if prev is None:
        return out  # nothing to copy from at any level: leave the caller's fill
    # the full size straight from the working level's field
    _distances(prev.image, prev.ty, prev.tx, prev.nny, prev.nnx, prev.dist, r)
    if prev_k == 0:
        _vote_up(colour, source, hole, prev.nny, prev.nnx, _vote_weights(prev, FINAL_PERCENTILE), 2 ** prev_k,
                 FINAL_RADIUS, colour)
    else:
        coarse = cv2.resize(np.ascontiguousarray(prev.image[..., :channels]), (hole.shape[1], hole.shape[0]),
                            interpolation=cv2.INTER_LINEAR).reshape(colour.shape)
        _pick_up(colour, source, hole, prev.nny, prev.nnx, coarse, 2 ** prev_k, PICK_LOWPASS, PICK_BAND, colour)
    if lowpass_sigma > 0:
        match_low_frequencies(colour, image.reshape(colour.shape), hole, lowpass_sigma * 2 ** prev_k, 2 ** prev_k)
    return out
