"""The composition model C = a*F + (1-a)*B and its exact inversions."""

import numpy as np

# Alpha above 1 - ALPHA_EPS counts as opaque foreground, below ALPHA_EPS as pure background.
ALPHA_EPS = 1e-4


def compose(alpha: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return a * fg + (1.0 - a) * bg


def unmix_background(image: np.ndarray, alpha: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """B = (C - a F) / (1 - a); meaningful where the background is partly visible."""
    a = alpha[..., None]
    return (image - a * fg) / np.maximum(1.0 - a, ALPHA_EPS)


def exact_layers(
    image: np.ndarray, alpha: np.ndarray, fg_guess: np.ndarray, bg_guess: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """F, B in [0,1] with a F + (1-a) B == C exactly (float rounding) for every pixel.

    B is the guess projected onto the interval the equation allows with F in [0,1]:
    [(C - a)/(1 - a), C/(1 - a)] clipped to [0,1]; then F = (C - (1-a) B)/a, which lands in [0,1].
    Where a ~ 0, B = C (copy-through); where a ~ 1, F = C (copy-through) and B is the guess.
    """
    fg = np.clip(fg_guess, 0.0, 1.0).astype(np.float32)
    bg = np.clip(bg_guess, 0.0, 1.0).astype(np.float32)
    opaque = alpha >= 1.0 - ALPHA_EPS
    clear = alpha <= ALPHA_EPS
    fg[opaque] = image[opaque]
    bg[clear] = image[clear]
    mixed = ~(opaque | clear)  # usually a thin band: work on it alone
    a = alpha[mixed][:, None].astype(np.float32)
    c = image[mixed]
    b = np.clip(bg[mixed], np.maximum(0.0, (c - a) / (1.0 - a)), np.minimum(1.0, c / (1.0 - a)))
    bg[mixed] = b
    fg[mixed] = np.clip((c - (1.0 - a) * b) / a, 0.0, 1.0)
    return fg, bg


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
