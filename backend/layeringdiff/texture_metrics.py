"""How the hidden part of a completed background looks, measured against the true background (MAD rewards blur:
a smooth fill is the best guess in the mean, and looks like a hole). Three figures over the hidden region
(true alpha >= 0.95):

- hf_ratio: high-frequency energy of the fill over the truth's (RMS of the luma detail band, the image minus its
  Gaussian blur of sigma HF_SIGMA). 1 is right; a smooth fill is far below, noise or ringing above.
- lowpass_MAD: MAD (x 255) of Gaussian-blurred versions (sigma LOWPASS_SIGMA): structure and colour, without the
  texture's phase, which no completion can know.
- patch_dist: the mean distance (RMS per pixel and channel, x 255) of each 7x7 patch of the fill to its nearest
  7x7 patch of the true hidden region, averaged with the same the other way round (each true patch to its nearest
  fill patch). Noise cannot fake it (noisy patches are near no true patch), nor a flat fill (the true textured
  patches are near none of its patches), nor copying the visible surroundings (the reference patches are the
  hidden region's own).
"""

import cv2
import numpy as np

HIDDEN_ALPHA = 0.95
HF_SIGMA = 2.0
LOWPASS_SIGMA = 8.0
PATCH_RADIUS = 3
MAX_QUERY_PATCHES = 1500  # fill patches compared (a fixed random subset of the hidden region's)
REFERENCE_STRIDE = 2  # true patches on this grid
BLOCK = 256  # query patches per distance block (memory)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _luma(image: np.ndarray) -> np.ndarray:
    return image @ LUMA if image.ndim == 3 and image.shape[2] >= 3 else image.astype(np.float32)


def detail(image: np.ndarray, sigma: float = HF_SIGMA) -> np.ndarray:
    """The luma's high-frequency band: luma minus its Gaussian blur."""
    y = _luma(np.asarray(image, np.float32))
    return y - cv2.GaussianBlur(y, (0, 0), sigma)


def lowpass(image: np.ndarray, sigma: float = LOWPASS_SIGMA) -> np.ndarray:
    return cv2.GaussianBlur(np.asarray(image, np.float32), (0, 0), sigma)


def hidden_region(alpha: np.ndarray, erode: int = 0) -> np.ndarray:
    region = (alpha >= HIDDEN_ALPHA).astype(np.uint8)
    if erode:
        region = cv2.erode(region, np.ones((2 * erode + 1,) * 2, np.uint8), borderValue=0)
    return region > 0


def _patches(image: np.ndarray, ys: np.ndarray, xs: np.ndarray, r: int = PATCH_RADIUS) -> np.ndarray:
    """N x (7*7*C) float32 patches centred at (ys, xs) (all at least r from the border)."""
    offs = np.arange(-r, r + 1)
    yy = ys[:, None, None] + offs[None, :, None]
    xx = xs[:, None, None] + offs[None, None, :]
    return image[yy, xx].reshape(len(ys), -1).astype(np.float32)


def _centres(region: np.ndarray, stride: int, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r = PATCH_RADIUS
    h, w = region.shape
    keep = np.zeros_like(region)
    keep[r:h - r:stride, r:w - r:stride] = True
    ys, xs = np.nonzero(region & keep)
    if ys.size > limit:
        pick = np.sort(np.random.default_rng(seed).choice(ys.size, limit, replace=False))
        ys, xs = ys[pick], xs[pick]
    return ys, xs


def _nearest(queries: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """RMS distance (x 255) of each query patch to its nearest reference patch (exact)."""
    ref_sq = np.einsum("ij,ij->i", refs, refs)
    best = []
    for start in range(0, len(queries), BLOCK):
        q = queries[start:start + BLOCK]
        d2 = np.einsum("ij,ij->i", q, q)[:, None] + ref_sq[None, :] - 2.0 * (q @ refs.T)
        best.append(np.maximum(d2.min(axis=1), 0.0))
    return np.sqrt(np.concatenate(best) / refs.shape[1]) * 255.0


def nearest_patch_distance(fill: np.ndarray, truth: np.ndarray, region: np.ndarray, seed: int = 0) -> tuple:
    """(coherence, completeness) over 7x7 patches centred in `region`: the mean RMS distance (x 255) of fill
    patches to their nearest true patch, and of true patches to their nearest fill patch (Simakov et al.'s
    bidirectional similarity). A fill made of one plausible patch scores well on the first only, a copy of the
    wrong texture on neither. Exact search between a fixed random subset of one side and a grid of the other."""
    fill3 = fill if fill.ndim == 3 else fill[..., None]
    truth3 = truth if truth.ndim == 3 else truth[..., None]
    figures = []
    for query_img, ref_img in ((fill3, truth3), (truth3, fill3)):
        qy, qx = _centres(region, 1, MAX_QUERY_PATCHES, seed)
        ry, rx = _centres(region, REFERENCE_STRIDE, 1 << 30, seed)
        if qy.size == 0 or ry.size == 0:
            return float("nan"), float("nan")
        figures.append(float(_nearest(_patches(query_img, qy, qx), _patches(ref_img, ry, rx)).mean()))
    return figures[0], figures[1]


def hidden_texture_metrics(background: np.ndarray, truth: np.ndarray, alpha: np.ndarray) -> dict[str, float]:
    """The three figures for a background layer (HxWx3, [0,1]) against the true one, over true alpha >= 0.95.
    Empty dict when nothing is hidden."""
    region = hidden_region(alpha)
    if region.sum() < (2 * PATCH_RADIUS + 1) ** 2:
        return {}
    bg = np.asarray(background[..., :3], np.float32)
    gt = np.asarray(truth[..., :3], np.float32)
    inner = hidden_region(alpha, erode=int(np.ceil(2 * HF_SIGMA)))  # the detail band of the region's own pixels
    inner = inner if inner.any() else region
    true_hf = float(np.sqrt(np.mean(detail(gt)[inner] ** 2)))
    hf = float(np.sqrt(np.mean(detail(bg)[inner] ** 2)))
    coherence, completeness = nearest_patch_distance(bg, gt, region)
    return {"hf_ratio": hf / max(true_hf, 1e-6),
            "lowpass_MAD": float(np.abs(lowpass(bg) - lowpass(gt))[region].mean()) * 255.0,
            "patch_dist": 0.5 * (coherence + completeness), "patch_coherence": coherence,
            "patch_completeness": completeness}


def matched_noise(fill: np.ndarray, truth: np.ndarray, alpha: np.ndarray, seed: int = 0) -> np.ndarray:
    """The fill plus white noise in the hidden region whose detail-band energy matches the truth's (an oracle
    amplitude): the opponent a patch statistic has to beat, since it gets hf_ratio right by construction."""
    region = hidden_region(alpha)
    out = np.array(fill[..., :3], np.float32)
    if not region.any():
        return out
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(region.shape).astype(np.float32)
    inner = hidden_region(alpha, erode=int(np.ceil(2 * HF_SIGMA)))
    inner = inner if inner.any() else region
    target = np.sqrt(np.mean(detail(truth[..., :3])[inner] ** 2))
    have = np.sqrt(np.mean(detail(out)[inner] ** 2))
    unit = np.sqrt(np.mean((noise - cv2.GaussianBlur(noise, (0, 0), HF_SIGMA))[inner] ** 2))
    amplitude = np.sqrt(max(target ** 2 - have ** 2, 0.0)) / max(unit, 1e-6)
    out[region] += amplitude * noise[region][:, None]  # luma-only noise, as film grain or paper
    return np.clip(out, 0.0, 1.0)


# Composites over textured photographs (shipped in scikit-image): the fill was tuned on the first set, its figures
# are reported on the second (other photos, other seeds).
TUNING_PHOTOS = ("brick", "immunohistochemistry", "chelsea", "hubble_deep_field")
HELD_OUT_PHOTOS = ("grass", "gravel", "coffee", "moon", "rocket")
FOREGROUND_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def textured_composite(background: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, ...]:
    """(composite, alpha, foreground, background) float32, C = a F + (1 - a) B: a random crop of `background`
    (HxWx3) resized to size x size, under a soft object (opaque body, strands) of random size and place."""
    from .examples import photo, soft_alpha

    rng = np.random.default_rng(seed)
    h, w = background.shape[:2]
    side = int(min(h, w) * rng.uniform(0.6, 1.0))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    bg = cv2.resize(background[y0:y0 + side, x0:x0 + side], (size, size), interpolation=cv2.INTER_AREA)
    if rng.integers(2):
        bg = bg[:, ::-1]
    obj = int(size * rng.uniform(0.55, 0.9))
    shape = soft_alpha(obj, obj, seed=int(rng.integers(1 << 30)), hair=int(rng.integers(0, 30)),
                       glass=bool(rng.integers(2)))
    alpha = np.zeros((size, size), np.float32)
    oy, ox = (int(rng.integers(0, size - obj + 1)) for _ in range(2))
    alpha[oy:oy + obj, ox:ox + obj] = shape
    fg_name = FOREGROUND_PHOTOS[int(rng.integers(len(FOREGROUND_PHOTOS)))]
    fg = cv2.resize(photo(fg_name), (size, size), interpolation=cv2.INTER_AREA)
    bg = np.ascontiguousarray(bg, np.float32)
    comp = alpha[..., None] * fg + (1.0 - alpha[..., None]) * bg
    return comp.astype(np.float32), alpha, fg, bg


def textured_set(photos: tuple[str, ...], per_photo: int, size: int = 384, seed: int = 0) -> list[tuple]:
    from .examples import photo

    return [(name, *textured_composite(photo(name), size, seed * 1000 + 17 * j + i))
            for i, name in enumerate(photos) for j in range(per_photo)]
