"""The nearest-neighbour field of the texture fill (numba kernels): for each patch over the hole, the centre of the
source patch it copies. Random starts and the onion-peel start, patch distances, PatchMatch passes (propagation and
random search, with the occurrence penalty) and the field brought up a level.

Random numbers come from a hash of (seed, pass, pixel): the result is a pure function of the input and the seed,
whatever the thread count.
"""

import numpy as np
from numba import njit

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
