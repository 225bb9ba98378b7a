"""Exemplar-based completion of a hole: multi-scale PatchMatch EM (Wexler et al. 2007, Barnes et al. 2009), the
method of Krita's Smart Patch tool and of content-aware fills.

The coarsest level starts by onion peeling (the hole filled ring by ring from its border, Newson et al. 2014); then,
coarse to fine, every hole pixel is rebuilt from the nearest 7x7 patches of the known region (nearest-neighbour
field by PatchMatch: propagation + random search), each pixel the weighted vote of the patches that cover it.
Large holes are solved at a reduced working size (MAX_WORK_PIXELS) and the full size is picked pixel by pixel from
the working level's offsets, scaled up (and its neighbours' picks): it copies full-resolution pixels of the known
region, so the detail is the texture's own, not an interpolation, and no per-pixel field is stored at full size.

Random numbers come from a hash of (seed, pass, pixel): the result is a pure function of the input and the seed,
whatever the thread count.
"""

import cv2
import numpy as np
from numba import njit, prange

from .inpaint import inpaint
from .membrane import match_low_frequencies

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

_U64 = np.uint64


@njit(cache=True, inline="always")
def _hash(a, b, c):  # pragma: no cover - numba; splitmix64 of three integers
    z = (np.uint64(a) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(b) * np.uint64(0xBF58476D1CE4E5B9)
         + np.uint64(c) * np.uint64(0x94D049BB133111EB) + np.uint64(0x632BE59BD9B4E019))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def _dist(img, py, px, qy, qx, r, limit):  # pragma: no cover - numba
    """SSD between the patch at p (clipped to the image) and the patch at q (inside), stopping above `limit`."""
    h, w = img.shape[0], img.shape[1]
    s = 0.0
    y0 = max(-r, -py)
    y1 = min(r, h - 1 - py)
    x0 = max(-r, -px)
    x1 = min(r, w - 1 - px)
    for dy in range(y0, y1 + 1):
        for dx in range(x0, x1 + 1):
            for c in range(img.shape[2]):
                d = img[py + dy, px + dx, c] - img[qy + dy, qx + dx, c]
                s += d * d
        if s > limit:
            return s
    return s


@njit(cache=True, nogil=True)
def _random_init(ty, tx, vy, vx, nny, nnx, seed):  # pragma: no cover - numba
    n_valid = vy.shape[0]
    for i in range(ty.shape[0]):
        k = _hash(seed, 0x5EED, i) % _U64(n_valid)
        nny[ty[i], tx[i]] = vy[k]
        nnx[ty[i], tx[i]] = vx[k]


@njit(cache=True, nogil=True)
def _masked_dist(img, known, py, px, qy, qx, r, limit, n_vote):  # pragma: no cover - numba
    """SSD between the patch at p (clipped to the image) and the patch at q (inside): the voted channels over p's
    known pixels, the guide channels (from n_vote on) over all."""
    h, w = img.shape[0], img.shape[1]
    s = 0.0
    for dy in range(max(-r, -py), min(r, h - 1 - py) + 1):
        for dx in range(max(-r, -px), min(r, w - 1 - px) + 1):
            first = 0 if known[py + dy, px + dx] else n_vote
            for c in range(first, img.shape[2]):
                d = img[py + dy, px + dx, c] - img[qy + dy, qx + dx, c]
                s += d * d
        if s > limit:
            return s
    return s


@njit(cache=True, nogil=True)
def _onion_init(img, hole, valid, vy, vx, nny, nnx, r, seed, draws, n_vote, coherence):  # pragma: no cover - numba
    """Fill the hole from its border inwards, one ring at a time (Newson et al.): each pixel copies the centre of
    the source patch that best matches the known part of its own patch (uniform draws, its filled neighbours'
    matches shifted, favoured by `coherence` < 1 so that copies run on instead of a mosaic, a local search around
    the best). A textured start, where a smooth one would let the EM
    settle on flat patches."""
    h, w = hole.shape
    n_valid = vy.shape[0]
    known = ~hole
    ring_y = np.empty(h * w, np.int64)
    ring_x = np.empty(h * w, np.int64)
    remaining = 0
    for y in range(h):
        for x in range(w):
            if hole[y, x]:
                remaining += 1
    ring_no = 0
    while remaining > 0:
        m = 0
        for y in range(h):
            for x in range(w):
                if known[y, x]:
                    continue
                for dy in range(-1, 2):
                    yy = y + dy
                    found = False
                    for dx in range(-1, 2):
                        xx = x + dx
                        if 0 <= yy < h and 0 <= xx < w and known[yy, xx]:
                            found = True
                            break
                    if found:
                        ring_y[m] = y
                        ring_x[m] = x
                        m += 1
                        break
        if m == 0:  # no known pixel at all
            break
        for j in range(m):
            y, x = ring_y[j], ring_x[j]
            by, bx, bd = -1, -1, np.inf
            for t in range(draws):
                kk = _hash(seed, ring_no * 0x1000 + t, y * w + x) % _U64(n_valid)
                d = _masked_dist(img, known, y, x, vy[kk], vx[kk], r, bd, n_vote)
                if d < bd:
                    by, bx, bd = vy[kk], vx[kk], d
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    yy, xx = y + dy, x + dx
                    if not (0 <= yy < h and 0 <= xx < w) or nny[yy, xx] < 0 or not known[yy, xx]:
                        continue
                    qy, qx = nny[yy, xx] - dy, nnx[yy, xx] - dx
                    if 0 <= qy < h and 0 <= qx < w and valid[qy, qx]:
                        d = _masked_dist(img, known, y, x, qy, qx, r, bd / coherence, n_vote) * coherence
                        if d < bd:
                            by, bx, bd = qy, qx, d
            rad = max(h, w) // 4
            t = 0
            while rad >= 1:
                z = _hash(seed, ring_no * 0x1000 + 0x800 + t, y * w + x)
                qy = by + np.int64(z % _U64(2 * rad + 1)) - rad
                qx = bx + np.int64((z >> _U64(32)) % _U64(2 * rad + 1)) - rad
                rad //= 2
                t += 1
                if 0 <= qy < h and 0 <= qx < w and valid[qy, qx]:
                    d = _masked_dist(img, known, y, x, qy, qx, r, bd, n_vote)
                    if d < bd:
                        by, bx, bd = qy, qx, d
            nny[y, x], nnx[y, x] = by, bx
            for c in range(n_vote):
                img[y, x, c] = img[by, bx, c]
        for j in range(m):
            known[ring_y[j], ring_x[j]] = True
        remaining -= m
        ring_no += 1


@njit(cache=True, nogil=True)
def _distances(img, ty, tx, nny, nnx, dist, r):  # pragma: no cover - numba
    for i in range(ty.shape[0]):
        y, x = ty[i], tx[i]
        dist[y, x] = _dist(img, y, x, nny[y, x], nnx[y, x], r, np.inf)


@njit(cache=True, nogil=True)
def _patchmatch(img, ty, tx, valid, vy, vx, nny, nnx, dist, r, iters, max_radius, seed, occ, occ_weight,
                cell):  # pragma: no cover - numba
    """PatchMatch passes over the target centres (ty, tx in scan order): propagation from the neighbours already
    visited in this pass, then random search around the best match at halving radii plus one uniform draw.
    A match costs its SSD plus `occ_weight` times how often its source cell (cell x cell pixels) is already
    used (Kaspar et al.'s occurrence penalty): the hole takes its patches from all over the source instead of
    collapsing onto its most common (flat) patch."""
    h, w = valid.shape
    n = ty.shape[0]
    n_valid = vy.shape[0]
    for it in range(iters):
        forward = it % 2 == 0
        step = 1 if forward else -1
        for j in range(n):
            i = j if forward else n - 1 - j
            y, x = ty[i], tx[i]
            oy, ox = nny[y, x], nnx[y, x]
            by, bx, bd = oy, ox, dist[y, x]
            occ[oy // cell, ox // cell] -= 1.0  # this pixel's own use does not count against it
            bc = bd + occ_weight * occ[oy // cell, ox // cell]
            # propagation: the neighbour's match shifted by one
            for k in range(2):
                ny = y - step if k == 0 else y
                nx = x if k == 0 else x - step
                if ny < 0 or ny >= h or nx < 0 or nx >= w or nny[ny, nx] < 0:
                    continue
                qy = nny[ny, nx] + (y - ny)
                qx = nnx[ny, nx] + (x - nx)
                if qy < 0 or qy >= h or qx < 0 or qx >= w or not valid[qy, qx]:
                    continue
                if qy == by and qx == bx:
                    continue
                pen = occ_weight * occ[qy // cell, qx // cell]
                if pen >= bc:
                    continue
                d = _dist(img, y, x, qy, qx, r, bc - pen)
                if d + pen < bc:
                    by, bx, bd, bc = qy, qx, d, d + pen
            # random search: one uniform draw, then a window around the best that halves down to one pixel
            rad = max_radius
            t = -1
            while rad >= 1:
                z = _hash(seed, it * 0x10001 + 2 + t, i)
                if t < 0:
                    kk = z % _U64(n_valid)
                    qy, qx = vy[kk], vx[kk]
                else:
                    qy = by + np.int64(z % _U64(2 * rad + 1)) - rad
                    qx = bx + np.int64((z >> _U64(32)) % _U64(2 * rad + 1)) - rad
                    rad //= 2
                t += 1
                if qy < 0 or qy >= h or qx < 0 or qx >= w or not valid[qy, qx]:
                    continue
                pen = occ_weight * occ[qy // cell, qx // cell]
                if pen >= bc:
                    continue
                d = _dist(img, y, x, qy, qx, r, bc - pen)
                if d + pen < bc:
                    by, bx, bd, bc = qy, qx, d, d + pen
            nny[y, x], nnx[y, x], dist[y, x] = by, bx, bd
            occ[by // cell, bx // cell] += 1.0


@njit(cache=True, nogil=True, parallel=True)
def _vote(img, hy, hx, nny, nnx, weight, r, out, ch):  # pragma: no cover - numba
    """Each hole pixel: the weighted mean of what the patches covering it say (their match's pixel at the same
    offset), for the first `ch` channels. Reads `img` only at source pixels, so it can run in parallel."""
    h, w = nny.shape
    for i in prange(hy.shape[0]):
        y, x = hy[i], hx[i]
        acc = np.zeros(ch)
        total = 0.0
        for dy in range(-r, r + 1):
            py = y + dy
            if py < 0 or py >= h:
                continue
            for dx in range(-r, r + 1):
                px = x + dx
                if px < 0 or px >= w or nny[py, px] < 0:
                    continue
                wt = weight[py, px]
                sy = nny[py, px] - dy
                sx = nnx[py, px] - dx
                for c in range(ch):
                    acc[c] += wt * img[sy, sx, c]
                total += wt
        if total > 0:
            for c in range(ch):
                out[y, x, c] = acc[c] / total


@njit(cache=True, nogil=True, parallel=True)
def _vote_up(img, source, hole, cny, cnx, cweight, factor, r, out):  # pragma: no cover - numba
    """The final vote at full size from a level `factor` times smaller: the patch centred at p copies with the
    offset of the coarse pixel p // factor, scaled up, so the detail is the full-size source's own. Rows run in
    parallel; only source pixels are read (never written), so the result does not depend on the thread count."""
    h, w = source.shape
    ch_, cw_ = cny.shape
    ch = out.shape[2]
    for y in prange(h):
        acc = np.zeros(ch)
        for x in range(w):
            if not hole[y, x]:
                continue
            acc[:] = 0.0
            total = 0.0
            for dy in range(-r, r + 1):
                if y + dy < 0:
                    continue
                cy = min((y + dy) // factor, ch_ - 1)
                for dx in range(-r, r + 1):
                    if x + dx < 0:
                        continue
                    cx = min((x + dx) // factor, cw_ - 1)
                    if cny[cy, cx] < 0:
                        continue
                    sy = y + (cny[cy, cx] - cy) * factor
                    sx = x + (cnx[cy, cx] - cx) * factor
                    if sy < 0 or sy >= h or sx < 0 or sx >= w or not source[sy, sx]:
                        continue
                    wt = cweight[cy, cx]
                    for c in range(ch):
                        acc[c] += wt * img[sy, sx, c]
                    total += wt
            if total > 0:
                for c in range(ch):
                    out[y, x, c] = acc[c] / total


@njit(cache=True, nogil=True, parallel=True)
def _pick_up(img, source, hole, cny, cnx, coarse, factor, lowpass_weight, band, out):  # pragma: no cover - numba
    """The full size from a level `factor` times smaller, one source pixel per hole pixel: among the offsets of the
    2x2 nearest coarse cells (scaled up) and those just picked for its left and upper neighbours, the one whose
    source best continues the already filled causal neighbours (left, up-left, up, up-right) and best agrees with
    the coarse result (`coarse`, that level's image brought up). Copies run on coherently and their seams follow
    the texture instead of the coarse grid. Rows in bands of `band` processed in parallel (each band starts
    afresh), so the result does not depend on the thread count."""
    h, w = source.shape
    ch_, cw_ = cny.shape
    ch = out.shape[2]
    n_bands = (h + band - 1) // band
    for b in prange(n_bands):
        y0 = b * band
        y1 = min(h, y0 + band)
        oy = np.zeros((2, w), np.int64)
        ox = np.zeros((2, w), np.int64)
        have = np.zeros((2, w), np.bool_)
        cand_y = np.empty(6, np.int64)
        cand_x = np.empty(6, np.int64)
        for y in range(y0, y1):
            cur = y & 1
            prv = 1 - cur
            for x in range(w):
                have[cur, x] = False
                if not hole[y, x]:
                    continue
                n = 0
                cy0 = min(y // factor, ch_ - 1)
                cx0 = min(x // factor, cw_ - 1)
                ny_ = -1 if 2 * (y - cy0 * factor) < factor else 1  # the nearer neighbouring cell row / column
                nx_ = -1 if 2 * (x - cx0 * factor) < factor else 1
                for dy in range(2):
                    cy = cy0 + dy * ny_
                    if cy < 0 or cy >= ch_:
                        continue
                    for dx in range(2):
                        cx = cx0 + dx * nx_
                        if cx < 0 or cx >= cw_ or cny[cy, cx] < 0:
                            continue
                        cand_y[n] = (cny[cy, cx] - cy) * factor
                        cand_x[n] = (cnx[cy, cx] - cx) * factor
                        n += 1
                if x > 0 and have[cur, x - 1]:
                    cand_y[n] = oy[cur, x - 1]
                    cand_x[n] = ox[cur, x - 1]
                    n += 1
                if y > y0 and have[prv, x]:
                    cand_y[n] = oy[prv, x]
                    cand_x[n] = ox[prv, x]
                    n += 1
                best = np.inf
                by = 0
                bx = 0
                found = False
                for k in range(n):
                    sy = y + cand_y[k]
                    sx = x + cand_x[k]
                    if sy < 0 or sy >= h or sx < 0 or sx >= w or not source[sy, sx]:
                        continue
                    d = 0.0
                    for c in range(ch):
                        e = coarse[y, x, c] - img[sy, sx, c]
                        d += lowpass_weight * e * e
                    for m in range(4):
                        ny = y if m == 0 else y - 1
                        nx = x - 1 if m == 0 else x - 2 + m
                        if ny < y0 or nx < 0 or nx >= w:
                            continue
                        qy = ny + cand_y[k]
                        qx = nx + cand_x[k]
                        if qy < 0 or qy >= h or qx < 0 or qx >= w or not source[qy, qx]:
                            continue
                        for c in range(ch):
                            e = out[ny, nx, c] - img[qy, qx, c]
                            d += e * e
                    if d < best:
                        best = d
                        by = cand_y[k]
                        bx = cand_x[k]
                        found = True
                if found:
                    for c in range(ch):
                        out[y, x, c] = img[y + by, x + bx, c]
                    oy[cur, x] = by
                    ox[cur, x] = bx
                    have[cur, x] = True


@njit(cache=True, nogil=True)
def _upsample_nnf(ty, tx, cny, cnx, valid, vy, vx, nny, nnx, seed):  # pragma: no cover - numba
    """A finer level's field from the coarser one: the match of the coarse pixel above, doubled, at the same
    sub-position; a random valid source where that falls outside the valid region."""
    ch_, cw_ = cny.shape
    h, w = valid.shape
    n_valid = vy.shape[0]
    for i in range(ty.shape[0]):
        y, x = ty[i], tx[i]
        cy = min(y // 2, ch_ - 1)
        cx = min(x // 2, cw_ - 1)
        qy, qx = -1, -1
        if cny[cy, cx] >= 0:
            qy = 2 * cny[cy, cx] + (y - 2 * cy)
            qx = 2 * cnx[cy, cx] + (x - 2 * cx)
        if qy < 0 or qy >= h or qx < 0 or qx >= w or not valid[qy, qx]:
            k = _hash(seed, 0xC0A5, i) % _U64(n_valid)
            qy, qx = vy[k], vx[k]
        nny[y, x] = qy
        nnx[y, x] = qx


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
