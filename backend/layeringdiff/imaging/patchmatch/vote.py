"""Pixels from the nearest-neighbour field (numba kernels): the weighted vote of the patches covering each hole pixel,
at the field's own size or at the full size from a smaller level, and the full size picked pixel by pixel from a
smaller level's offsets."""

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _accumulate(acc, img, sy, sx, wt):  # pragma: no cover - numba
    """One patch's vote for a pixel: its match's pixel (sy, sx) of `img`, weighted `wt`, added to `acc` (the first
    len(acc) channels). Returns `wt`, for the caller's total of the weights (the mean is acc / total)."""
    for c in range(acc.shape[0]):
        acc[c] += wt * img[sy, sx, c]
    return wt


@njit(cache=True, inline="always")
def _write_mean(out, y, x, acc, total):  # pragma: no cover - numba
    """The pixel's vote: the accumulated values over the total weight, into `out` (left as it is without votes)."""
    if total > 0:
        for c in range(acc.shape[0]):
            out[y, x, c] = acc[c] / total


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
                total += _accumulate(acc, img, nny[py, px] - dy, nnx[py, px] - dx, weight[py, px])
        _write_mean(out, y, x, acc, total)


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
                    total += _accumulate(acc, img, sy, sx, cweight[cy, cx])
            _write_mean(out, y, x, acc, total)


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
