"""Filling the background hidden behind an opaque foreground (classical, no weights)."""

import cv2
import numpy as np

TELEA_RADIUS = 5
# Telea's cost grows with the hole's area; larger images are filled at reduced size, only the hole
# takes the upsampled fill, so every visible pixel keeps its exact value.
MAX_SIDE = 1024


def inpaint(image: np.ndarray, hole: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """image HxWx3 float32 [0,1], hole HxW bool -> image with the hole filled from its surroundings."""
    if not hole.any():
        return image.copy()
    if hole.all():
        return np.full_like(image, float(np.mean(image)))
    h, w = hole.shape
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        src = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        small_hole = cv2.resize(hole.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        # grow the small hole so no hidden pixel leaks into the source after downscaling
        small_hole = cv2.dilate(small_hole, np.ones((3, 3), np.uint8))
    else:
        src, small_hole = image, hole.astype(np.uint8)
    # 8-bit on purpose: OpenCV's float32 path returns out-of-range garbage; hidden pixels need no more
    src8 = (np.clip(src, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    filled = cv2.inpaint(src8, small_hole, TELEA_RADIUS, cv2.INPAINT_TELEA).astype(np.float32) / 255.0
    if scale < 1.0:
        filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    out = image.copy()
    out[hole] = filled[hole]
    return np.clip(out, 0.0, 1.0)
