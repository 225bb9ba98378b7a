"""Harmonic (membrane) interpolation of a hole from its border: the smoothest surface that takes the known pixels'
values, i.e. Laplace's equation inside the hole with the known pixels as boundary (Dirichlet) values and the image
border free (Neumann). It follows brightness and colour gradients across the hole, as a retoucher's soft brush
would, and takes nothing from what covers the hole. It is smooth, so it is solved at a reduced size (block means of
the known pixels, a sparse direct solve) and read back bilinearly; the full-size passes are numba kernels that
allocate nothing full-size (on a 4096^2 canvas every full-size copy is 200 MB and a tenth of a second).

match_low_frequencies puts a fill (the texture fill's) on such a membrane's tone: the fill's detail, the
target's low frequencies."""

import cv2
import numpy as np
from numba import njit, prange
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import splu

# Unknown pixels at the solved size: a 2D Laplacian of this many unknowns factorises in ~0.05 s.
MAX_SOLVE_PIXELS = 20_000
# A block is a boundary value when at least this share of its pixels is known.
KNOWN_SHARE = 0.5
# Unknown pixels with no path to a known one still get a value: a faint pull to the mean of the known pixels.
SCREENING = 1e-6


@njit(cache=True, nogil=True, parallel=True)
def _block_means(values, minus, use_minus, mask, factor, means, share):  # pragma: no cover - numba
    """Mean of values (- minus) over the `mask` pixels of each factor x factor block, and the mask's share of it."""
    h, w = mask.shape
    bh, bw = share.shape
    c = values.shape[2]
    for by in prange(bh):
        acc = np.zeros(c, np.float64)
        for bx in range(bw):
            acc[:] = 0.0
            n = 0
            total = 0
            for y in range(by * factor, min(h, (by + 1) * factor)):
                for x in range(bx * factor, min(w, (bx + 1) * factor)):
                    total += 1
                    if mask[y, x]:
                        n += 1
                        for k in range(c):
                            acc[k] += values[y, x, k] - minus[y, x, k] if use_minus else values[y, x, k]
            share[by, bx] = n / total
            for k in range(c):
                means[by, bx, k] = acc[k] / n if n else 0.0


@njit(cache=True, inline="always")
def _coords(i, factor, n):  # pragma: no cover - numba
    """Block index below fine index i, the one above, and the weight of the one above (bilinear between block
    centres, clamped at the ends: cv2.resize's INTER_LINEAR convention)."""
    t = (i + 0.5) / factor - 0.5
    if t <= 0.0:
        return 0, 0, 0.0
    if t >= n - 1:
        return n - 1, n - 1, 0.0
    i0 = int(t)
    return i0, i0 + 1, t - i0


@njit(cache=True, nogil=True, parallel=True)
def _blend_up(image, small, factor, weight, lo, hi, use_alpha, add, out):  # pragma: no cover - numba
    """Per pixel, with m = `small` read back bilinearly: out = image + wt * (m - image), or image + wt * m with
    `add`; wt from `weight` (HxW): with use_alpha, smoothstep((weight - lo) / (hi - lo)), else weight itself (a 0/1
    mask). Pixels of weight 0 are copied. `out` may be `image`."""
    h, w = weight.shape
    sh, sw = small.shape[0], small.shape[1]
    c = image.shape[2]
    for y in prange(h):
        y0, y1, fy = _coords(y, factor, sh)
        for x in range(w):
            wt = weight[y, x]
            if use_alpha:
                s = min(max((wt - lo) / (hi - lo), 0.0), 1.0)
                wt = s * s * (3.0 - 2.0 * s)
            if wt <= 0.0:
                for k in range(c):
                    out[y, x, k] = image[y, x, k]
                continue
            x0, x1, fx = _coords(x, factor, sw)
            for k in range(c):
                m = ((1 - fy) * ((1 - fx) * small[y0, x0, k] + fx * small[y0, x1, k])
                     + fy * ((1 - fx) * small[y1, x0, k] + fx * small[y1, x1, k]))
                out[y, x, k] = image[y, x, k] + wt * (m if add else m - image[y, x, k])


def _solve(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Laplace's equation on the unknown pixels of `values` (HxWxC), the known ones fixed."""
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
    rhs += SCREENING * values[known].mean(axis=0)
    n_links = sum(a.size for a in rows)
    matrix = coo_matrix((np.concatenate([-np.ones(n_links), degree + SCREENING]),
                         (np.concatenate(rows + [me]), np.concatenate(cols + [me]))), shape=(n, n))
    out = values.astype(np.float32)
    out[ys, xs] = splu(matrix.tocsc()).solve(rhs).astype(np.float32)
    return out


def solve_membrane(image: np.ndarray, known: np.ndarray, max_pixels: int = MAX_SOLVE_PIXELS) -> tuple[np.ndarray, int]:
    """(the membrane at a reduced size, the reduction factor): `image` (HxWxC float32) averaged over its known
    pixels in blocks of factor x factor (the smallest power of two that leaves at most `max_pixels` unknown blocks;
    a block is known when at least KNOWN_SHARE of it is), Laplace's equation solved on the unknown blocks. Needs at
    least one known pixel."""
    h, w = known.shape
    factor = 2 ** max(0, int(np.ceil(0.5 * np.log2(max(np.count_nonzero(~known), 1) / max_pixels))))
    bh, bw = -(-h // factor), -(-w // factor)
    means = np.empty((bh, bw, image.shape[2]), np.float32)
    share = np.empty((bh, bw), np.float32)
    _block_means(image, image, False, known, factor, means, share)
    small_known = share >= KNOWN_SHARE
    if not small_known.any():  # every known pixel in blocks mostly unknown: take those blocks as they are
        small_known = share > 0
    return _solve(means, small_known), factor


def harmonic_fill(image: np.ndarray, known: np.ndarray, max_pixels: int = MAX_SOLVE_PIXELS) -> np.ndarray:
    """`image` (HxWxC float32) with its unknown pixels (~known) replaced by the membrane spanned by the known ones
    (solve_membrane, read back bilinearly). Known pixels are returned unchanged. No known pixel at all: the image's
    mean."""
    image = np.ascontiguousarray(image, np.float32)
    if known.all():
        return image.copy()
    if not known.any():
        return np.broadcast_to(image.reshape(-1, image.shape[2]).mean(axis=0), image.shape).astype(np.float32)
    small, factor = solve_membrane(image, known, max_pixels)
    out = np.empty_like(image)
    _blend_up(image, small, factor, (~known).astype(np.float32), 0.0, 1.0, False, False, out)
    return out


def blend_membrane(guess: np.ndarray, alpha: np.ndarray, known: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """In place: `guess` (HxWxC float32) handed over to the membrane spanned by its `known` pixels as alpha goes
    from `lo` to `hi` (smoothstep), and returned."""
    if known.all() or not known.any() or not (alpha > lo).any():
        return guess
    small, factor = solve_membrane(guess, known)
    _blend_up(guess, small, factor, np.ascontiguousarray(alpha, np.float32), lo, hi, True, False, guess)
    return guess


def match_low_frequencies(fill: np.ndarray, target: np.ndarray, region: np.ndarray, sigma: float,
                          scale: int = 1) -> np.ndarray:
    """In place: `fill` (HxWxC float32) with its low frequencies inside `region` replaced by `target`'s: fill + the
    local mean of (target - fill) over the region's own pixels (a Gaussian of `sigma` normalised by the region's
    share, so the correction keeps its full strength up to the region's border instead of fading to half there
    and leaving a ring of the fill's own tone). Outside the region the fill is unchanged. Computed on blocks of
    `scale` x `scale` (a power of two; blurred by sigma / scale, read back bilinearly): the correction is smooth."""
    if not region.any() or sigma <= 0:
        return fill
    h, w = region.shape
    bh, bw = -(-h // scale), -(-w // scale)
    means = np.empty((bh, bw, fill.shape[2]), np.float32)
    share = np.empty((bh, bw), np.float32)
    _block_means(target, fill, True, region, scale, means, share)
    s = sigma / scale
    means *= share[..., None]
    correction = cv2.GaussianBlur(means, (0, 0), s).reshape(means.shape) / np.maximum(
        cv2.GaussianBlur(share, (0, 0), s), 1e-6)[..., None]
    _blend_up(fill, np.ascontiguousarray(correction, np.float32), scale, region.astype(np.float32), 0.0, 1.0,
              False, True, fill)
    return fill
