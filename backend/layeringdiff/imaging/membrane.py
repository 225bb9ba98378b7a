"""Harmonic (membrane) interpolation of a hole from its border: the smoothest surface that takes the known pixels'
values, i.e. Laplace's equation inside the hole with the known pixels as boundary (Dirichlet) values and the image
border free (Neumann). It follows brightness and colour gradients across the hole, as a retoucher's soft brush
would, and takes nothing from what covers the hole. Solved at a reduced size (the result is smooth: only its low
frequencies are used), by a sparse direct solve."""

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import splu

# Unknown pixels at the solved size: a 2D Laplacian of this many unknowns factorises in ~0.05 s.
MAX_SOLVE_PIXELS = 20_000
# A coarse pixel is a boundary value when at least this share of the pixels it covers is known.
KNOWN_SHARE = 0.5
# Unknown pixels with no path to a known one still get a value: a faint pull to the mean of the known pixels.
SCREENING = 1e-6


def _solve(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Laplace's equation on the unknown pixels of `values` (HxWxC float32), the known ones fixed."""
    h, w = known.shape
    index = np.full((h, w), -1, np.int64)
    ys, xs = np.nonzero(~known)
    n = ys.size
    index[ys, xs] = np.arange(n)
    rows, cols, rhs = [], [], np.zeros((n, values.shape[2]), np.float64)
    degree = np.zeros(n, np.float64)
    me = np.arange(n)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        degree += inside
        ny, nx, p = ny[inside], nx[inside], me[inside]
        q = index[ny, nx]
        free = q >= 0
        rows.append(p[free])
        cols.append(q[free])
        np.add.at(rhs, p[~free], values[ny[~free], nx[~free]].astype(np.float64))
    mean = values[known].mean(axis=0) if known.any() else np.full(values.shape[2], 0.5)
    rhs += SCREENING * mean
    r = np.concatenate(rows + [me])
    c = np.concatenate(cols + [me])
    v = np.concatenate([-np.ones(sum(a.size for a in rows)), degree + SCREENING])
    lu = splu(coo_matrix((v, (r, c)), shape=(n, n)).tocsc())
    out = values.astype(np.float32).copy()
    out[ys, xs] = lu.solve(rhs).astype(np.float32)
    return out


def harmonic_fill(image: np.ndarray, known: np.ndarray, max_pixels: int = MAX_SOLVE_PIXELS) -> np.ndarray:
    """`image` (HxWxC float32) with its unknown pixels (~known) replaced by the membrane spanned by the known ones,
    solved at the largest halving of the size with at most `max_pixels` unknowns and brought back bilinearly.
    Known pixels are returned unchanged. No known pixel at all: the image's mean."""
    image = np.asarray(image, np.float32)
    out = image.copy()
    if known.all():
        return out
    if not known.any():
        out[:] = image.reshape(-1, image.shape[2]).mean(axis=0)
        return out
    h, w = known.shape
    level = max(0, int(np.ceil(0.5 * np.log2(max(np.count_nonzero(~known), 1) / max_pixels))))
    size = (max(1, w >> level), max(1, h >> level))
    weight = known.astype(np.float32)
    if level:
        share = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
        total = cv2.resize(image * weight[..., None], size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
        small_known = share >= KNOWN_SHARE
        small = total / np.maximum(share, 1e-6)[..., None]
    else:
        small_known, small = known, image
    solved = _solve(small, small_known)
    if level:
        solved = cv2.resize(solved, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
    out[~known] = solved[~known]
    return out


def match_low_frequencies(fill: np.ndarray, target: np.ndarray, region: np.ndarray, sigma: float,
                          scale: int = 1) -> np.ndarray:
    """`fill` with its low frequencies inside `region` replaced by `target`'s: fill + the local mean of
    (target - fill) over the region's own pixels (a Gaussian of `sigma`, normalised by the region's share, so the
    correction keeps its full strength up to the region's border instead of fading to half there and leaving a
    ring of the fill's own tone). Outside the region the fill is returned unchanged. Computed `scale` times smaller
    (area-averaged, blurred by sigma / scale, brought back bilinearly): the correction is smooth."""
    out = np.array(fill, np.float32)
    if not region.any() or sigma <= 0:
        return out
    h, w = region.shape
    weight = region.astype(np.float32)
    diff = (np.asarray(target, np.float32) - out).reshape(h, w, -1) * weight[..., None]
    size = (max(1, round(w / scale)), max(1, round(h / scale)))
    if scale > 1:
        diff = cv2.resize(diff, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
        weight = cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
    s = sigma / scale
    mean = cv2.GaussianBlur(diff, (0, 0), s).reshape(diff.shape) / np.maximum(
        cv2.GaussianBlur(weight, (0, 0), s), 1e-6)[..., None]
    if scale > 1:
        mean = cv2.resize(mean, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
    out.reshape(h, w, -1)[region] += mean[region]
    return out
