"""Offline example inputs: photos that ship inside scikit-image, and synthetic soft-alpha composites."""

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class Example:
    loader: str  # skimage.data function name
    box: tuple[int, int, int, int]  # foreground box x0, y0, x1, y1 in the photo's pixels
    what: str


EXAMPLES = {
    "coffee": Example("coffee", (40, 8, 520, 395), "an espresso cup on a wooden table"),
    "astronaut": Example("astronaut", (40, 0, 330, 512), "Eileen Collins in front of a flag and a shuttle model"),
    "chelsea": Example("chelsea", (10, 0, 420, 300), "Chelsea the cat"),
}


def photo(name: str) -> np.ndarray:
    """A skimage.data photo as HxWx3 float32 in [0,1]."""
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return (img[..., :3].astype(np.float32) / 255.0).copy()


def example(name: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    if name not in EXAMPLES:
        raise InputError(f"unknown example {name!r}; choose one of {', '.join(EXAMPLES)}")
    ex = EXAMPLES[name]
    return photo(ex.loader), ex.box


def soft_alpha(h: int, w: int, seed: int = 0, hair: int = 40, glass: bool = True) -> np.ndarray:
    """A foreground matte with an opaque body, hair-like strands and a semi-transparent patch.

    Drawn at 4x and area-downsampled, so edges and strands get true fractional coverage.
    """
    rng = np.random.default_rng(seed)
    s = 4
    canvas = np.zeros((h * s, w * s), np.float32)
    cy, cx, r = h * s // 2, w * s // 2, int(min(h, w) * s * 0.28)
    cv2.circle(canvas, (cx, cy), r, 1.0, -1)
    for _ in range(hair):
        ang = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.08, 0.22) * min(h, w) * s
        pts = []
        phase = rng.uniform(0, 6)
        for t in np.linspace(0, 1, 12):
            bend = 0.5 * np.sin(2 * t + phase)
            a = ang + bend * t
            rad = r * 0.9 + t * length
            pts.append((cx + rad * np.cos(a), cy + rad * np.sin(a)))
        cv2.polylines(canvas, [np.int32(pts)], False, float(rng.uniform(0.6, 1.0)), thickness=int(rng.integers(2, 5)))
    if glass:
        cv2.ellipse(canvas, (int(cx + r * 0.9), int(cy - r * 0.9)), (r // 2, r // 3), 30, 0, 360, 0.5, -1)
    alpha = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
    return np.clip(alpha, 0.0, 1.0)


def synthetic_composite(
    h: int = 256, w: int = 256, seed: int = 0, fg_photo: str = "chelsea", bg_photo: str = "astronaut"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(composite, alpha, foreground, background) with C = a F + (1 - a) B exactly (float32)."""
    fg = cv2.resize(photo(fg_photo), (w, h), interpolation=cv2.INTER_AREA)
    bg = cv2.resize(photo(bg_photo), (w, h), interpolation=cv2.INTER_AREA)
    alpha = soft_alpha(h, w, seed)
    comp = alpha[..., None] * fg + (1.0 - alpha[..., None]) * bg
    return comp.astype(np.float32), alpha, fg, bg
