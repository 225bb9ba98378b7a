"""Closed-form matting (Levin et al. 2008) solved only on the trimap's unknown band.

pymatting builds the Laplacian for every pixel (n x 25 entries: 1.6 GB at 2048^2); here only the windows
that touch an unknown pixel are visited and only unknown rows are stored, so cost follows the band.
"""

import contextlib
import io

import cv2
import numpy as np
import scipy.sparse
import scipy.sparse.linalg
from numba import njit
from pymatting.preconditioner.ichol import ichol

from .trimap import SOFT_HI, SOFT_LO, UNKNOWN, thin_parts, unknown_box

EPSILON = 1e-7  # Levin et al.'s colour-line regulariser
RADIUS = 1  # 3x3 windows
PRIOR_WEIGHT = 1e-6  # weak pull towards the hint, keeps border-only pixels well posed
# Where the hint has strands (trimap_and_strands), and over a narrow object's band (trimap.NARROW_SURE), the prior is
# held this firmly: a strand a pixel or two wide has no window with its pure colour, so the colour lines cannot tell
# alpha 0.5 from a darker strand. On bench_layers.py --bands' strands (a hard mask cut at alpha 0.5, photo over
# photo; the band's inner reach then 16 px) the soft-band error with 1e-6 / 1e-3 / 3e-3 / 1e-2 here: 13-30 / 8-27 /
# 9-24 / 10-22 /255, the whole alpha's 7-27 / 5-22 / 5-19 / 4-15; on bench_layers' scenes 1e-2 gave a higher median
# soft-band error than 3e-3 (14.6 against 13.8/255). Elsewhere the weak prior holds: 1e-3 everywhere raised the edge
# error of 12 of bench_band.py's held-out feathered selections from 23.6 to 32.9/255 on average.
STRAND_PRIOR_WEIGHT = 3e-3
# A hard hint (a mask, not a feathered selection: its values 0/1 but for an anti-aliased edge) says on which side of
# half coverage each of its pixels lies, and no more: "this pixel is this object's" means it shows most there. The
# prior's pull towards 0/1 cannot say that: weak, it lets the colour lines give a faint strand away to what surrounds
# it, or take a patch of the background that looks like the object; firm, it makes strands opaque. So where the
# solved alpha lands on the wrong side of 0.5 at a hard hint pixel, it is held to 0.5 there (HOLD_WEIGHT) and the band
# within HOLD_REACH_PX of those pixels solved again, the rest kept: a one-sided constraint that leaves the alpha free
# on its own side. Only where the picture agrees with the hint's edge (HOLD_AGREEMENT of the band's pixels either side
# of its 0.5 line on their side after the first solve, where the picture can judge: hint_agreement): a mask drawn a
# few pixels off the object's edge disagrees along all of it, and holding it there would draw a false edge at 0.5. The
# pull is a weight: a pixel the colour lines pull harder (a sliver a pixel or two wide) stays across after the second
# solve, and is then set at 0.5 (clamped to its side): on bench_layers' 1024^2 scenes the worst alpha IoU 0.48 ->
# 1.00, the off-edge masks' error unchanged.
# Measured (`benchmarks/bench_layers.py`, exact labels; `benchmarks/bench_hold.py`, hard masks off the edge): see
# docs/benchmarks.md.
HOLD_WEIGHT = 1.0
HOLD_AGREEMENT = 0.7
HOLD_REACH_PX = 8
# an unlabelled pixel set on its side: below half, also once stored in 8 bits (0.5 itself rounds to 128/255)
BELOW_HALF = 0.5 - 0.5 / 255
# Above this many unknown pixels the solve runs at reduced size (see estimate_alpha).
MAX_UNKNOWN = 120_000
GUIDED_EPS = 1e-4
CG_RTOL = 1e-7
CG_MAXITER = 2000
# 1e-3 was 2x faster to factorise than pymatting's 1e-4, alpha within 1e-4; 3e-3 another 1.4x on bench_layers.py's
# 1024^2 objects, alpha within 1.1e-3 of 1e-3's (a quarter of a level)
ICHOL_DISCARD = 3e-3
BOX_MARGIN = 64  # around the unknown band's box: the windows (2 px) and the guided filter's reach


@njit(cache=True, nogil=True)
def _assemble(image, r, eps, cy, cx, uidx, fg_known, values, rhs):  # pragma: no cover - numba
    size = 2 * r + 1
    area = size * size
    c = np.empty((size, size, 3))
    for n in range(cy.shape[0]):
        y = cy[n]
        x = cx[n]
        for d in range(3):
            s = 0.0
            for dy in range(size):
                for dx in range(size):
                    s += image[y + dy - r, x + dx - r, d]
            mean = s / area
            for dy in range(size):
                for dx in range(size):
                    c[dy, dx, d] = image[y + dy - r, x + dx - r, d] - mean
        a00 = eps
        a01 = 0.0
        a02 = 0.0
        a11 = eps
        a12 = 0.0
        a22 = eps
        for dy in range(size):
            for dx in range(size):
                a00 += c[dy, dx, 0] * c[dy, dx, 0] / area
                a01 += c[dy, dx, 0] * c[dy, dx, 1] / area
                a02 += c[dy, dx, 0] * c[dy, dx, 2] / area
                a11 += c[dy, dx, 1] * c[dy, dx, 1] / area
                a12 += c[dy, dx, 1] * c[dy, dx, 2] / area
                a22 += c[dy, dx, 2] * c[dy, dx, 2] / area
        det = a00 * (a11 * a22 - a12 * a12) - a01 * (a01 * a22 - a12 * a02) + a02 * (a01 * a12 - a11 * a02)
        inv = 1.0 / det
        m00 = (a11 * a22 - a12 * a12) * inv
        m01 = (a02 * a12 - a01 * a22) * inv
        m02 = (a01 * a12 - a02 * a11) * inv
        m11 = (a00 * a22 - a02 * a02) * inv
        m12 = (a01 * a02 - a00 * a12) * inv
        m22 = (a00 * a11 - a01 * a01) * inv
        for dyi in range(size):
            for dxi in range(size):
                yi = y + dyi - r
                xi = x + dxi - r
                ui = uidx[yi, xi]
                if ui < 0:
                    continue
                s0 = c[dyi, dxi, 0]
                s1 = c[dyi, dxi, 1]
                s2 = c[dyi, dxi, 2]
                c0 = m00 * s0 + m01 * s1 + m02 * s2
                c1 = m01 * s0 + m11 * s1 + m12 * s2
                c2 = m02 * s0 + m12 * s1 + m22 * s2
                for dyj in range(size):
                    for dxj in range(size):
                        yj = y + dyj - r
                        xj = x + dxj - r
                        t = c0 * c[dyj, dxj, 0] + c1 * c[dyj, dxj, 1] + c2 * c[dyj, dxj, 2]
                        same = 1.0 if (dyi == dyj and dxi == dxj) else 0.0
                        v = same - (1.0 + t) / area
                        uj = uidx[yj, xj]
                        if uj >= 0:
                            values[ui, yj - yi + 2 * r, xj - xi + 2 * r] += v
                        else:
                            rhs[ui] -= v * fg_known[yj, xj]


def estimate_alpha(image: np.ndarray, trimap: np.ndarray, prior: np.ndarray | None = None,
                   firm: np.ndarray | None = None, hold: bool = False,
                   guessed: np.ndarray | None = None) -> np.ndarray:
    """Alpha (HxW float32) for an RGB image in [0,1] and a trimap with 0 / 0.5 / 1, pulled weakly towards `prior`
    (PRIOR_WEIGHT), and firmly (STRAND_PRIOR_WEIGHT) where `firm` (HxW bool: the hint's strands, or a narrow
    object's band: trimap_and_strands) is set. `hold`: the prior is the user's own hard mask; where the picture
    agrees with its edge, its pixels are kept on their side of half coverage (HOLD_WEIGHT), but for `guessed`'s
    (HxW bool: the caller's guess, not the user's word).

    Only the unknown band's box (plus a margin) is worked on: on a big canvas memory and time follow the band,
    not the canvas (4096^2 canvas, 2200x1800 object: the guided filter's ten full-size temporaries were 670 MB).
    """
    alpha = (trimap >= 1.0).astype(np.float32)
    box = unknown_box(trimap, BOX_MARGIN)
    if box is None:
        return alpha
    weight = None
    if prior is not None and firm is not None:
        weight = np.where(firm[box], np.float32(STRAND_PRIOR_WEIGHT), np.float32(PRIOR_WEIGHT))
    alpha[box] = _estimate_band(image[box], trimap[box], None if prior is None else prior[box], weight, hold,
                                None if guessed is None else guessed[box])
    return alpha


def _estimate_band(image: np.ndarray, trimap: np.ndarray, prior: np.ndarray | None,
                   weight: np.ndarray | None = None, hold: bool = False,
                   guessed: np.ndarray | None = None) -> np.ndarray:
    """CG iterations grow with the band's width in pixels, so very large bands are solved at reduced size
    and brought back with a guided filter (He et al.), which restores edges from the full-size image (and the
    hint is not held there: its pixels are gone)."""
    n = int(np.count_nonzero(trimap == UNKNOWN))
    if n <= MAX_UNKNOWN:
        return _estimate_alpha(image, trimap, prior, weight, hold, guessed)
    h, w = trimap.shape
    scale = float(np.sqrt(MAX_UNKNOWN / n))
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = cv2.resize(image[..., :3], size, interpolation=cv2.INTER_AREA)
    fg = cv2.resize((trimap >= 1.0).astype(np.float32), size, interpolation=cv2.INTER_AREA)
    bg = cv2.resize((trimap <= 0.0).astype(np.float32), size, interpolation=cv2.INTER_AREA)
    small_tri = np.full(fg.shape, UNKNOWN, np.float32)
    small_tri[fg >= 0.999] = 1.0
    small_tri[bg >= 0.999] = 0.0
    small_prior = None if prior is None else cv2.resize(prior.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    small_weight = None if weight is None else cv2.resize(weight, size, interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(_estimate_alpha(small, small_tri, small_prior, small_weight), (w, h),
                        interpolation=cv2.INTER_LINEAR)
    grey = cv2.cvtColor(np.ascontiguousarray(image[..., :3], np.float32), cv2.COLOR_RGB2GRAY)
    refined = guided_filter(grey, coarse, max(2, round(2.0 / scale)), GUIDED_EPS)
    alpha = (trimap >= 1.0).astype(np.float32)
    unknown = trimap == UNKNOWN
    alpha[unknown] = np.clip(refined[unknown], 0.0, 1.0)
    return alpha


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Grey-guided filter: locally src ~ a * guide + b, so src's edges follow the guide's."""
    k = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, cv2.CV_32F, k, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(guide), box(src)
    cov = box(guide * src) - mean_i * mean_p
    var = box(guide * guide) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def _estimate_alpha(image: np.ndarray, trimap: np.ndarray, prior: np.ndarray | None,
                    weight: np.ndarray | None = None, hold: bool = False,
                    guessed: np.ndarray | None = None) -> np.ndarray:
    """The closed form on the band; `hold`, `guessed`: estimate_alpha's."""
    h, w = trimap.shape
    unknown = trimap == UNKNOWN
    alpha = (trimap >= 1.0).astype(np.float32)
    n = int(unknown.sum())
    if n == 0:
        return alpha
    r = RADIUS
    uidx = np.full((h, w), -1, np.int64)
    uidx[unknown] = np.arange(n)
    # window centres whose window touches an unknown pixel (interior only, as in Levin et al.)
    touch = np.zeros((h, w), bool)
    ys, xs = np.nonzero(unknown)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            touch[np.clip(ys + dy, 0, h - 1), np.clip(xs + dx, 0, w - 1)] = True
    touch[:r] = touch[h - r:] = False
    touch[:, :r] = touch[:, w - r:] = False
    cy, cx = np.nonzero(touch)
    k = 4 * r + 1
    values = np.zeros((n, k, k))
    rhs = np.zeros(n)
    # float32 in, float64 arithmetic inside the kernel (the same numbers): no float64 copy of the band's box (24 B a
    # pixel, 400 MB when two far corners make the box a 4096^2 canvas)
    fg_known = (trimap >= 1.0).astype(np.float32)
    _assemble(image[..., :3].astype(np.float32, copy=False), r, EPSILON,
              cy.astype(np.int64), cx.astype(np.int64), uidx, fg_known, values, rhs)
    # CSR over unknown pixels: neighbour (dy, dx) offsets of each row, kept where also unknown
    off = np.arange(k) - 2 * r
    ny = ys[:, None, None] + off[None, :, None]
    nx = xs[:, None, None] + off[None, None, :]
    inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
    cols = np.where(inside, uidx[np.clip(ny, 0, h - 1), np.clip(nx, 0, w - 1)], -1)
    keep = cols >= 0
    rows = np.broadcast_to(np.arange(n)[:, None, None], cols.shape)[keep]
    lap = scipy.sparse.csr_matrix((values[keep], (rows, cols[keep])), shape=(n, n))
    hint = np.full(n, UNKNOWN) if prior is None else np.clip(prior[unknown].astype(np.float64), 0, 1)
    pull = np.full(n, PRIOR_WEIGHT) if weight is None else weight[unknown].astype(np.float64)
    lap = lap + scipy.sparse.diags(pull, format="csr")
    rhs = rhs + pull * hint
    x = _solve(lap, rhs, hint)
    alpha[unknown] = np.clip(x, 0.0, 1.0)
    if hold and prior is not None and hint_agreement(alpha, prior >= 0.5, unknown, guessed) >= HOLD_AGREEMENT:
        kept = (hint <= SOFT_LO) | (hint >= SOFT_HI)  # the user's word: an anti-aliased edge's pixels say nothing
        if guessed is not None:
            kept &= ~guessed[unknown]
        on = hint >= 0.5
        crossed = kept & ((x >= 0.5) != on)
        if crossed.any():
            x = _hold_half(lap, rhs, x, crossed, unknown, uidx)  # a copy
            # the pull is a weight: what stays across is set on its side (at 0.5; an unlabelled pixel a hair
            # under it too, to BELOW_HALF, so that it stays under once stored in 8 bits)
            up, down = kept & on, kept & ~on
            x[up] = np.maximum(x[up], UNKNOWN)
            x[down] = np.minimum(x[down], BELOW_HALF)
            alpha[unknown] = np.clip(x, 0.0, 1.0)
    return alpha


def _hold_half(lap: scipy.sparse.csr_matrix, rhs: np.ndarray, x: np.ndarray, held: np.ndarray, unknown: np.ndarray,
               uidx: np.ndarray) -> np.ndarray:
    """The band's solution with the `held` pixels pulled to 0.5 (HOLD_WEIGHT), solved again within HOLD_REACH_PX of
    them and kept elsewhere (the hold's effect fades within a few windows; the whole band again cost about as much
    as the first solve, for the same alpha).
    `uidx`: each band pixel's index in x, -1 outside the band."""
    where = np.zeros(unknown.shape, np.uint8)
    where[unknown] = held
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * HOLD_REACH_PX + 1, 2 * HOLD_REACH_PX + 1))
    near = uidx[cv2.dilate(where, disc).view(bool) & unknown]
    rows = lap[near]
    outside = x.copy()
    outside[near] = 0.0
    pull = HOLD_WEIGHT * held[near]
    part = rows[:, near] + scipy.sparse.diags(pull, format="csr")
    solved = x.copy()
    solved[near] = _solve(part.tocsr(), rhs[near] + pull * UNKNOWN - rows @ outside, x[near])
    return solved


def hint_agreement(alpha: np.ndarray, side: np.ndarray, unknown: np.ndarray,
                   guessed: np.ndarray | None = None) -> float:
    """The share of the band's pixels along the hint's edge (`side`: the hint at 0.5; its own pixels there and their
    neighbours outside it) that the alpha puts on the hint's side of 0.5; 0 where the band has none. Only where the
    picture can judge the user's word: not along `guessed` (the peel's completion under front objects, where the
    picture is the peel's own estimate), nor at the hint's thin parts (trimap.thin_parts: strands, a sliver a few
    pixels wide), where no window holds the object's colour alone and the colour lines give them away whatever the
    picture shows (a sliver seen between front objects: 0.66 counting them, 0.77 without). Where that leaves
    nothing, nothing the picture shows disagrees: 1."""
    inside = side.view(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    inner = side & ~cv2.erode(inside, kernel).view(bool) & unknown
    outer = ~side & cv2.dilate(inside, kernel).view(bool) & unknown
    if not (inner.any() or outer.any()):
        return 0.0
    ignored = thin_parts(inside, cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_5))
    if guessed is not None:
        ignored |= guessed
    inner &= ~ignored
    outer &= ~cv2.dilate(ignored.view(np.uint8), kernel).view(bool)
    count = np.count_nonzero(inner) + np.count_nonzero(outer)
    right = np.count_nonzero(alpha[inner] >= 0.5) + np.count_nonzero(alpha[outer] < 0.5)
    return right / count if count else 1.0


def _solve(lap: scipy.sparse.csr_matrix, rhs: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """Preconditioned CG; scipy's returns its best iterate instead of raising when it stops early."""
    with contextlib.redirect_stdout(io.StringIO()):  # pymatting prints retries with a larger shift
        precond = ichol(lap, discard_threshold=ICHOL_DISCARD)
    op = scipy.sparse.linalg.LinearOperator(lap.shape, matvec=precond, dtype=np.float64)
    x, _ = scipy.sparse.linalg.cg(lap, rhs, x0=x0, rtol=CG_RTOL, maxiter=CG_MAXITER, M=op)
    return x
