"""How the hidden part of a completed background looks, measured against the true background (MAD rewards blur:
a smooth fill is the best guess in the mean, and looks like a hole). Three figures over the hidden region
(true alpha >= 0.95):

- hf_ratio: high-frequency energy of the fill over the truth's (RMS of the luma detail band, the image minus its
  Gaussian blur of sigma HF_SIGMA). 1 is right; a smooth fill is far below, noise or ringing above.
- lowpass_MAD: MAD (x 255) of Gaussian-blurred versions (sigma LOWPASS_SIGMA): structure and colour, without the
  texture's phase, which no completion can know.
- patch_SW: how far the fill's 7x7 patches are, as a distribution, from the true hidden region's (sliced
  Wasserstein distance, x 255). Noise cannot fake it (its patches have the wrong correlations), nor a flat or
  blurred fill (too little spread). The mean distance of each fill patch to its nearest true patch was tried first
  and dropped: on gravel and grass a perfect texture (another crop of the same photo) scored worse than a flat fill
  (16.0 against 15.4 on gravel) and a blurred crop best (13.3), the same reward for blur as MAD's.
- border_tone: how much lighter or darker the fill is, on average, than the truth along the hole's border (the
  partly hidden band 0.3 <= alpha < 0.95 and the hidden pixels within BORDER_PX of it; |mean luma difference|,
  x 255): an outline or a ring of another tone around the hole, which the eye finds at once and lowpass_MAD,
  averaged over the whole hole, dilutes.
"""

import cv2
import numpy as np

from .stages.classical import HIDDEN_ALPHA

HF_SIGMA = 2.0
BORDER_ALPHA = 0.3
BORDER_PX = 6
LOWPASS_SIGMA = 8.0
PATCH_RADIUS = 3
PATCH_SAMPLES = 4000  # patch centres compared (a fixed random subset of the region's)
SW_DIRECTIONS = 128
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


def _centres(region: np.ndarray, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Patch centres in `region` (at least a patch radius from the border), a fixed random subset of `limit`."""
    r = PATCH_RADIUS
    h, w = region.shape
    inside = np.zeros_like(region)
    inside[r:h - r, r:w - r] = True
    ys, xs = np.nonzero(region & inside)
    if ys.size > limit:
        pick = np.sort(np.random.default_rng(seed).choice(ys.size, limit, replace=False))
        ys, xs = ys[pick], xs[pick]
    return ys, xs


def patch_distribution_distance(fill: np.ndarray, truth: np.ndarray, region: np.ndarray, seed: int = 0) -> float:
    """Sliced Wasserstein distance (x 255) between the 7x7 patches of the fill and of the truth in `region`: the
    patches of both at the same centres, projected on SW_DIRECTIONS fixed random directions, each projection's
    sorted values compared (Rabin et al. 2011; Heitz et al. 2021 use it as a texture loss). It compares what the
    patches look like, not where they are, so the texture's phase does not count, while a flat fill (all patches
    at one point), a blur (too little spread) and white noise (the wrong correlations between pixels) all
    score far from a real texture of the same kind."""
    fill3 = fill if fill.ndim == 3 else fill[..., None]
    truth3 = truth if truth.ndim == 3 else truth[..., None]
    ys, xs = _centres(region, PATCH_SAMPLES, seed)
    if ys.size == 0:
        return float("nan")
    a, b = _patches(fill3, ys, xs), _patches(truth3, ys, xs)
    directions = np.random.default_rng(seed).standard_normal((a.shape[1], SW_DIRECTIONS)).astype(np.float32)
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    pa, pb = np.sort(a @ directions, axis=0), np.sort(b @ directions, axis=0)
    return float(np.sqrt(np.mean((pa - pb) ** 2)) * 255.0)


def border_region(alpha: np.ndarray) -> np.ndarray:
    """The hole's border: BORDER_ALPHA <= alpha < HIDDEN_ALPHA, and alpha >= HIDDEN_ALPHA within BORDER_PX of it."""
    hidden = (alpha >= HIDDEN_ALPHA).astype(np.uint8)
    near = cv2.distanceTransform(np.pad(hidden, 1, constant_values=1), cv2.DIST_L2, 3)[1:-1, 1:-1] <= BORDER_PX
    return (alpha >= BORDER_ALPHA) & ((alpha < HIDDEN_ALPHA) | near)


def border_tone(background: np.ndarray, truth: np.ndarray, alpha: np.ndarray) -> float:
    """|mean luma difference| (x 255) of the background against the truth over border_region; nan if it is empty."""
    ring = border_region(alpha)
    if not ring.any():
        return float("nan")
    return abs(float(np.mean(_luma(background[..., :3])[ring] - _luma(truth[..., :3])[ring]))) * 255.0


def hidden_texture_metrics(background: np.ndarray, truth: np.ndarray, alpha: np.ndarray) -> dict[str, float]:
    """The four figures for a background layer (HxWx3, [0,1]) against the true one, over true alpha >= 0.95 (and
    its border). Empty dict when nothing is hidden."""
    region = hidden_region(alpha)
    if region.sum() < (2 * PATCH_RADIUS + 1) ** 2:
        return {}
    bg = np.asarray(background[..., :3], np.float32)
    gt = np.asarray(truth[..., :3], np.float32)
    inner = hidden_region(alpha, erode=int(np.ceil(2 * HF_SIGMA)))  # the detail band of the region's own pixels
    inner = inner if inner.any() else region
    true_hf = float(np.sqrt(np.mean(detail(gt)[inner] ** 2)))
    hf = float(np.sqrt(np.mean(detail(bg)[inner] ** 2)))
    return {"hf_ratio": hf / max(true_hf, 1e-6),
            "lowpass_MAD": float(np.abs(lowpass(bg) - lowpass(gt))[region].mean()) * 255.0,
            "patch_SW": patch_distribution_distance(bg, gt, region),
            "border_tone": border_tone(bg, gt, alpha)}


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
