"""Foreground colour estimation: multi-level method of Germer et al. 2020 (via pymatting)."""

import numpy as np
from pymatting import estimate_foreground_ml

REGULARIZATION = 1e-5


def estimate_foreground(image: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smooth F and B estimates with a F + (1-a) B close to C (not exact: see compose.exact_layers)."""
    fg, bg = estimate_foreground_ml(
        image[..., :3].astype(np.float32), alpha.astype(np.float32),
        regularization=REGULARIZATION, return_background=True,
    )
    return np.clip(fg, 0, 1).astype(np.float32), np.clip(bg, 0, 1).astype(np.float32)
