"""The composition model C = a*F + (1-a)*B and its exact inversions."""

import numpy as np

from ..options import COMPOSITIONS, LEAST_CHANGE, PROJECTION
from .inpaint import inpaint

# Alpha above 1 - ALPHA_EPS counts as opaque foreground, below ALPHA_EPS as pure background.
ALPHA_EPS = 1e-4


def compose(alpha: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return a * fg + (1.0 - a) * bg


def composite_stack(layers: list[np.ndarray], background: np.ndarray) -> np.ndarray:
    """Straight-alpha RGBA layers (front first; uint8 or float) over a background (HxWx3/4 float): what the stack
    shows, the background's shape; a background's own alpha is covered by each layer's as colour is."""
    out = background.astype(np.float32, copy=True)
    for stored in reversed(layers):
        layer = stored / np.float32(255) if stored.dtype == np.uint8 else stored
        a = layer[..., 3:4]
        out[..., :3] = a * layer[..., :3] + (1 - a) * out[..., :3]
        if out.shape[2] == 4:
            out[..., 3:4] = a + (1 - a) * out[..., 3:4]
    return out


def composite_error(layers: list[np.ndarray], background: np.ndarray, image: np.ndarray) -> float:
    """Max difference between what a paint program shows of the stack (straight-alpha layers, front first, "over"
    each other and the background) and `image` (HxWx3, or HxWx4 straight alpha), compared premultiplied: the colour
    of a pixel no layer shows is no part of the picture (a transparent pixel's stored colour is arbitrary)."""
    scale = np.float32(255 if background.dtype == np.uint8 else 1)  # a background as an 8-bit file stores it
    colour = background[..., :3].astype(np.float32, copy=True) / scale
    shown = np.ones(colour.shape[:2] + (1,), np.float32) if background.shape[2] == 3 else \
        background[..., 3:4].astype(np.float32, copy=True) / scale
    colour *= shown
    for stored in reversed(layers):
        layer = stored / np.float32(255) if stored.dtype == np.uint8 else stored
        a = layer[..., 3:4]
        colour *= 1 - a
        colour += a * layer[..., :3]
        shown *= 1 - a
        shown += a
    want = np.ones_like(shown) if image.shape[2] == 3 else image[..., 3:4]
    return float(max(np.abs(colour - want * image[..., :3]).max(), np.abs(shown - want).max()))


def unmix_background(image: np.ndarray, alpha: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """B = (C - a F) / (1 - a); meaningful where the background is partly visible."""
    a = alpha[..., None]
    return (image - a * fg) / np.maximum(1.0 - a, ALPHA_EPS)


def _copied_through(image: np.ndarray, alpha: np.ndarray, fg_guess: np.ndarray,
                    bg_guess: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The guesses clipped to [0,1], with the composite copied through: F = C where a ~ 1, B = C where a ~ 0.
    Also returns the mixed pixels (0 < a < 1, usually a thin band), the only ones the composition steps change."""
    fg = np.clip(fg_guess, 0.0, 1.0).astype(np.float32)
    bg = np.clip(bg_guess, 0.0, 1.0).astype(np.float32)
    opaque = alpha >= 1.0 - ALPHA_EPS
    clear = alpha <= ALPHA_EPS
    fg[opaque] = image[opaque]
    bg[clear] = image[clear]
    return fg, bg, ~(opaque | clear)


def _project(a: np.ndarray, c: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel (rows of a, c, b): B projected onto the interval the equation allows with F in [0,1],
    [(C - a)/(1 - a), C/(1 - a)] clipped to [0,1]; then F = (C - (1-a) B)/a, which lands in [0,1]."""
    b = np.clip(b, np.maximum(0.0, (c - a) / (1.0 - a)), np.minimum(1.0, c / (1.0 - a)))
    return np.clip((c - (1.0 - a) * b) / a, 0.0, 1.0), b


def exact_layers(
    image: np.ndarray, alpha: np.ndarray, fg_guess: np.ndarray, bg_guess: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """F, B in [0,1] with a F + (1-a) B == C exactly (float rounding) for every pixel: the projection.

    B is the guess projected onto the range the equation allows and F re-derived (_project). Where a ~ 0,
    B = C (copy-through); where a ~ 1, F = C (copy-through) and B is the guess.
    """
    fg, bg, mixed = _copied_through(image, alpha, fg_guess, bg_guess)
    fg[mixed], bg[mixed] = _project(alpha[mixed][:, None].astype(np.float32), image[mixed], bg[mixed])
    return fg, bg


# A corrected pixel whose equation is off by more than this after clipping falls back to the projection.
COMPOSITION_TOL = 1e-5


def least_change_layers(
    image: np.ndarray, alpha: np.ndarray, fg_guess: np.ndarray, bg_guess: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """The composition step that uses both layers (this project's addition to the paper): F, B in [0,1] with
    a F + (1-a) B == C, changing the guesses as little as possible.

    Per pixel and channel the smallest change (in the sum of squares) of (F, B) that satisfies the equation is
    r = C - a F - (1-a) B;  F += a r / (a^2 + (1-a)^2);  B += (1-a) r / (a^2 + (1-a)^2):
    each layer takes the share of the residual its alpha gives it, so the foreground's guess (FBDD's foreground
    decoder, FAN) counts as much as the background's. The result is clipped to [0,1]; on the pixels where that
    clipping breaks the equation, exact_layers' projection takes over (returned: their share of the pixels with
    0 < a < 1). Copy-through as in the paper: F = C where a = 1, B = C where a = 0.
    """
    fg, bg, mixed = _copied_through(image, alpha, fg_guess, bg_guess)
    if not mixed.any():
        return fg, bg, 0.0
    a = alpha[mixed][:, None].astype(np.float32)
    c, f, b = image[mixed], fg[mixed], bg[mixed]
    r = c - a * f - (1.0 - a) * b
    norm = a * a + (1.0 - a) * (1.0 - a)
    f = np.clip(f + a * r / norm, 0.0, 1.0)
    b = np.clip(b + (1.0 - a) * r / norm, 0.0, 1.0)
    broken = (np.abs(a * f + (1.0 - a) * b - c) > COMPOSITION_TOL).any(axis=1)
    if broken.any():  # the projection of the (corrected, clipped) background, F re-derived
        f[broken], b[broken] = _project(a[broken], c[broken], b[broken])
    fg[mixed], bg[mixed] = f, b
    return fg, bg, float(broken.mean())


def compose_layers(image: np.ndarray, alpha: np.ndarray, fg_guess: np.ndarray, bg_guess: np.ndarray,
                   composition: str = LEAST_CHANGE) -> tuple[np.ndarray, np.ndarray, float]:
    """The exact composition step by name: LEAST_CHANGE (both layers corrected) or PROJECTION (the background
    projected, the foreground re-derived). Returns F, B and the share of mixed pixels that fell back to the
    projection (1.0 for PROJECTION itself)."""
    if composition == LEAST_CHANGE:
        return least_change_layers(image, alpha, fg_guess, bg_guess)
    if composition == PROJECTION:
        fg, bg = exact_layers(image, alpha, fg_guess, bg_guess)
        return fg, bg, 1.0
    raise ValueError(f"composition must be one of {COMPOSITIONS}, got {composition!r}")


def recomposition_error(
    image: np.ndarray, alpha: np.ndarray, fg: np.ndarray, bg: np.ndarray, eps: float = ALPHA_EPS
) -> float:
    """Max |a F + (1-a) B - C| over pixels where the background is at least partly visible."""
    visible = alpha < 1.0 - eps
    if not visible.any():
        return 0.0
    a = alpha[visible][:, None]
    return float(np.abs(a * fg[visible] + (1.0 - a) * bg[visible] - image[visible]).max())


def layer_alphas(layer_alpha: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alphas of the two new layers when the source layer itself is semi-transparent.

    Foreground over background must equal the source over anything below it:
    a_F = a * L, a_B = L (1 - a) / (1 - a L), and a_B = 1 where a L = 1 (hidden, completed).
    """
    fa = alpha * layer_alpha
    denom = 1.0 - fa
    ba = np.where(denom > ALPHA_EPS, layer_alpha * (1.0 - alpha) / np.maximum(denom, ALPHA_EPS), 1.0)
    ba = np.where(layer_alpha >= 1.0 - ALPHA_EPS, 1.0, ba)
    return fa.astype(np.float32), np.clip(ba, 0.0, 1.0).astype(np.float32)


def extend_foreground(fg: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """The foreground layer's colours where alpha = 0, defined (the paper leaves them open): its colours where
    alpha > 0 (`visible`) kept, and extended outward by push-pull (inpaint.py: averages of the visible pixels down
    a pyramid, each invisible pixel taking the finest level that saw any). Training targets (train/dataset.py)
    and the whole-layer metrics (evaluate.py) both use this definition."""
    if visible.all() or not visible.any():
        return np.array(fg, dtype=np.float32, copy=True)
    return inpaint(np.asarray(fg, dtype=np.float32), ~visible)
