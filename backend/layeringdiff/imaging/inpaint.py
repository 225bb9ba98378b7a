"""Filling the background hidden behind an opaque foreground (classical, no weights).

Push-pull (pyramid) filling: the visible pixels are averaged down a Gaussian-like pyramid with their
coverage as weight, and each hole pixel takes the finest level that saw any visible pixel. It is O(N),
has no streaks (unlike Telea at large holes), and gives the smooth colour a painter expects to paint
over; real completion of hidden content is the diffusion layering stage's job.
"""

import cv2
import numpy as np

MIN_WEIGHT = 1e-6


def inpaint(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """image HxWxC float32 [0,1], hole HxW bool -> image with the hole filled from its surroundings."""
    if not hole.any():
        return image.copy()
    if hole.all():
        return np.full_like(image, float(np.mean(image)))
    known = (~hole).astype(np.float32)
    # push: weighted averages at halving sizes until the coarsest level has no empty pixel
    levels = [(image * known[..., None], known)]
    while True:
        colour, weight = levels[-1]
        h, w = weight.shape
        if (weight > MIN_WEIGHT).all() or min(h, w) <= 1:
            break
        size = (max(1, (w + 1) // 2), max(1, (h + 1) // 2))
        levels.append((cv2.resize(colour, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1),
                       cv2.resize(weight, size, interpolation=cv2.INTER_AREA)))
    # pull: from coarse to fine, blend each level's own estimate with the upsampled coarser one
    colour, weight = levels[-1]
    filled = colour / np.maximum(weight, MIN_WEIGHT)[..., None]
    for colour, weight in reversed(levels[:-1]):
        h, w = weight.shape
        up = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, -1)
        own = colour / np.maximum(weight, MIN_WEIGHT)[..., None]
        confidence = np.clip(weight, 0.0, 1.0)[..., None]
        filled = confidence * own + (1.0 - confidence) * up
    out = image.copy()
    out[hole] = filled[hole]
    return np.clip(out, 0.0, 1.0)
