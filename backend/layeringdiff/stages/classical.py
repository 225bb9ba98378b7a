"""The offline layer method (no weights): multi-level foreground estimation, exact un-mixing of the partly
visible background and completion of the hidden part (smooth, texture or LaMa). The split around it is split.py."""

from typing import Callable

import cv2
import numpy as np
from numba import njit, prange

from ..errors import InputError
from ..imaging.compose import ALPHA_EPS
from ..imaging.foreground import estimate_foreground
from ..imaging.membrane import blend_membrane
from ..imaging.patchmatch import complete
from ..options import DEFAULT_FILL, LayerMethod
from ..progress import ProgressFn

# Above this alpha the background is treated as hidden and completed by inpainting (paper: 0.95).
HIDDEN_ALPHA = 0.95
# Exact un-mixing B = (C - aF) / (1 - a) divides F's error by 1 - a: it is used as it is where alpha is 0 and
# hands over to the multi-level background estimate by this alpha (on `layeringdiff evaluate`'s synthetic set
# this cut background MAD 15% and foreground MAD 16% against handing over at 0.5 -> 0.95 to a push-pull fill).
UNMIX_ALPHA = 0.3
# From UNMIX_ALPHA to HIDDEN_ALPHA the multi-level estimate hands over in turn to the membrane (imaging/membrane.py)
# spanned by where the background shows (alpha < SOURCE_ALPHA): inside a large opaque object the estimate has no
# data and its coarse levels mix in the object's own colours (a pale disc behind a white cup), while the membrane
# continues the surrounding tone and its gradients. On evaluate's held-out set (60 composites): background MAD
# 16.49 -> 15.82, MSE 3.86 -> 3.41, hidden lowpass_MAD 19.1 -> 16.7, foreground MAD 9.93 -> 9.49 (smooth fill;
# texture fill: background MAD 20.29 -> 18.08, MSE 6.30 -> 4.61).
# A generative or texture fill of the hidden part blends in from this alpha.
TRUSTED_ALPHA = 0.5
HOLE_GROW_PX = 2
# The texture fill rebuilds everything from this alpha up (the guess is mostly the smooth estimate there), so its
# patches at the border see the un-mixed band, and copies exemplars only from where the background shows.
TEXTURE_FROM_ALPHA = 0.3
SOURCE_ALPHA = 0.02
# The texture fill keeps its detail and takes its low frequencies from the guess (the membrane where hidden): a
# Gaussian of this many pixels at the fill's working size (imaging/patchmatch.complete's lowpass_sigma). Smaller
# holds the tone more tightly and flattens the texture's own variation: on bench_texture.py's tuning set, patch_SW
# 16.23 / 15.65 / 15.41 and border_tone 1.33 / 1.43 / 1.45 at 4 / 6 / 8 (lowpass_MAD 12.7 at all three).
TEXTURE_LOWPASS_SIGMA = 6.0

FillFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def texture_fill(alpha: np.ndarray, seed: int = 0) -> FillFn:
    """Exemplar-based completion (imaging/patchmatch/) of the background where alpha >= TEXTURE_FROM_ALPHA,
    from patches where it shows (alpha < SOURCE_ALPHA), guided by the guess and keeping its low frequencies: the
    texture's detail on the guess's tone, joined without a seam of tone to the background around it."""

    def fill(guess: np.ndarray, hole: np.ndarray) -> np.ndarray:
        region = hole | (alpha >= TEXTURE_FROM_ALPHA)
        return complete(guess, region, source=alpha < SOURCE_ALPHA, seed=seed, lowpass_sigma=TEXTURE_LOWPASS_SIGMA)

    return fill


@njit(cache=True, nogil=True, parallel=True)
def _unmixed_then_estimate(image, alpha, fg_est, bg_est, unmix_alpha, out):  # pragma: no cover - numba
    """out = the exact un-mixing (C - a F) / (1 - a), clipped, handing over to bg_est by smoothstep(a / unmix_alpha);
    one pass, no full-size temporaries."""
    h, w = alpha.shape
    for y in prange(h):
        for x in range(w):
            a = alpha[y, x]
            s = min(max(a / unmix_alpha, 0.0), 1.0)
            t = s * s * (3.0 - 2.0 * s)
            keep = 1.0 / max(1.0 - a, ALPHA_EPS)
            for k in range(3):
                b = bg_est[y, x, k]
                if t < 1.0:
                    u = min(max((image[y, x, k] - a * fg_est[y, x, k]) * keep, 0.0), 1.0)
                    b = (1.0 - t) * u + t * b
                out[y, x, k] = b


def background_guess(image: np.ndarray, alpha: np.ndarray, fg_est: np.ndarray, bg_est: np.ndarray) -> np.ndarray:
    """Exactly un-mixed where the background shows clearly, the multi-level estimate (`bg_est`) where it is mostly
    hidden (from UNMIX_ALPHA) and the membrane spanned by the clearly visible background where it is wholly hidden
    (by HIDDEN_ALPHA): the smooth fill of the hidden part, and the texture fill's guide and tone."""
    guess = np.empty(alpha.shape + (3,), np.float32)
    _unmixed_then_estimate(image[..., :3], alpha, fg_est, bg_est, UNMIX_ALPHA, guess)
    return blend_membrane(guess, alpha, alpha < SOURCE_ALPHA, UNMIX_ALPHA, HIDDEN_ALPHA)


def blend_fill(guess: np.ndarray, alpha: np.ndarray, fill: FillFn | None) -> np.ndarray:
    """`fill` (texture, LaMa, SD2) replaces the guess where the background is hidden (alpha >= HIDDEN_ALPHA,
    grown by HOLE_GROW_PX), blending in from TRUSTED_ALPHA."""
    hole = alpha >= HIDDEN_ALPHA
    if fill is None or not hole.any():
        return guess
    hole = cv2.dilate(hole.astype(np.uint8), np.ones((2 * HOLE_GROW_PX + 1,) * 2, np.uint8)) > 0
    weight = smoothstep((alpha - TRUSTED_ALPHA) / (HIDDEN_ALPHA - TRUSTED_ALPHA))[..., None]
    return (1.0 - weight) * guess + weight * fill(guess, hole)


def complete_background(image: np.ndarray, alpha: np.ndarray, fg_est: np.ndarray, bg_est: np.ndarray,
                        fill: FillFn | None = None) -> np.ndarray:
    """Background guess (background_guess), with the hidden part replaced by `fill` when one is given."""
    return blend_fill(background_guess(image, alpha, fg_est, bg_est), alpha, fill)


def classical_method(fill: str = DEFAULT_FILL, model_fill: FillFn | None = None, seed: int = 0) -> LayerMethod:
    """The offline layer method with the hidden background filled by `fill`: "smooth" (background_guess: the
    membrane from the visible border where hidden), "texture" (exemplar-based completion, deterministic for
    `seed`) or "lama" (`model_fill`, the LaMa ONNX model's; see imaging/lama.py)."""
    if fill == "lama" and model_fill is None:
        raise InputError("the lama fill needs its model", "run it through the backend or the CLI (--fill lama)")

    def layers(rgb: np.ndarray, alpha: np.ndarray, progress: ProgressFn) -> tuple[np.ndarray, np.ndarray]:
        progress("foreground", 0.0)
        fg_est, bg_est = estimate_foreground(rgb, alpha)
        progress("background", 0.5)
        guess = background_guess(rgb, alpha, fg_est, bg_est)
        if fill == "smooth":
            return fg_est, guess
        progress("fill", 0.6)
        return fg_est, blend_fill(guess, alpha, texture_fill(alpha, seed) if fill == "texture" else model_fill)

    return LayerMethod("classical", layers, local=True, fill=fill)
