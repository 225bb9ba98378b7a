"""The split's orchestration, the same for every layer method: hint -> trimap -> alpha -> the layer method's
foreground/background guesses -> the exact composition step -> RGBA layers.

Layer methods sit side by side: classical.py (offline), zero_shot.py (SD2 inpainting), layering.py (FBDD + HFA).
"""

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..imaging.compose import LEAST_CHANGE, compose_layers, layer_alphas, recomposition_error
from ..imaging.matting import estimate_alpha
from ..imaging.trimap import FEATHER_MIN_RAMP_PX, UNKNOWN, check_mask, mask_from_box, selection_ramp, trimap_and_strands
from ..options import LayerMethod, MatteFn, SplitOptions
from ..progress import ProgressFn, no_progress, sub_progress

CROP_MARGIN_PX = 64  # context kept around the object for a local layer method
METHOD_SHARE = (0.6, 0.9)  # of the split's progress bar


@dataclass
class SplitResult:
    foreground: np.ndarray  # HxWx4, straight (non-premultiplied) alpha
    background: np.ndarray  # HxWx4, opaque wherever the source layer was
    alpha: np.ndarray  # HxW matte of the foreground within the layer's colours
    info: dict[str, Any] = field(default_factory=dict)


MIN_SIDE_PX = 4  # the matting's windows and the trimap's band need a few pixels each way


def check_size(image: np.ndarray) -> None:
    if min(image.shape[:2]) < MIN_SIDE_PX:
        raise InputError(f"image of {image.shape[1]}x{image.shape[0]} pixels is too small to split (it needs "
                         f"{MIN_SIDE_PX} pixels or more each way)")


def check_shows(image: np.ndarray) -> None:
    """A layer with nothing visible has nothing to split."""
    if image.ndim == 3 and image.shape[2] == 4 and not np.any(image[..., 3] > 0):
        raise InputError("the layer is fully transparent: nothing to split")


def check_image(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InputError(f"image must be HxWx3 or HxWx4, got shape {image.shape}")
    check_size(image)
    if not np.all(np.isfinite(image)):
        raise InputError("image contains NaN or infinite values")
    image = image.astype(np.float32, copy=False)
    if image.min() < 0.0 or image.max() > 1.0:  # a copy only when needed: on a 4096^2 layer it is 268 MB
        image = np.clip(image, 0.0, 1.0)
    return image


def object_crop(alpha: np.ndarray, margin: int = CROP_MARGIN_PX) -> tuple[slice, slice]:
    """Rows and columns of the box around alpha > 0, grown by `margin` and clipped to the image."""
    h, w = alpha.shape
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        return slice(0, h), slice(0, w)
    return (slice(max(0, rows[0] - margin), min(h, rows[-1] + 1 + margin)),
            slice(max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin)))


def context_margin(alpha: np.ndarray, context: float) -> int:
    """CROP_MARGIN_PX, or `context` times the object's box size when that is more."""
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0 or context <= 0:
        return CROP_MARGIN_PX
    return max(CROP_MARGIN_PX, round(context * max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)))


def box_region(box: tuple[int, int, int, int], h: int, w: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    region = np.zeros((h, w), bool)
    region[max(0, min(y0, y1)):max(y0, y1), max(0, min(x0, x1)):max(x0, x1)] = True
    return region


class StageTimer:
    """A progress callback that also times each stage: from its first report to the next stage's."""

    def __init__(self, progress: ProgressFn) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}
        self._stage = ""
        self._since = time.perf_counter()

    def __call__(self, stage: str, fraction: float) -> None:
        if stage != self._stage:
            now = time.perf_counter()
            if self._stage:
                self.timings[self._stage] = round(self.timings.get(self._stage, 0.0) + now - self._since, 4)
            self._stage, self._since = stage, now
        self.progress(stage, fraction)


def split_alpha(rgb: np.ndarray, mask: np.ndarray | None, box: tuple[int, int, int, int] | None,
                options: SplitOptions, progress: ProgressFn, info: dict[str, Any],
                matte: MatteFn | None = None, guessed: np.ndarray | None = None) -> np.ndarray:
    """The foreground's alpha from a mask or a box: the hint, a trimap around its edge, closed-form matting or
    `matte`'s (a learned one) on that trimap, or the mask itself as the alpha in "mask" mode. The closed form holds
    a hard mask's pixels on their side of half coverage (matting.HOLD_WEIGHT), but for a box's (GrabCut's guess) and
    `guessed`'s (HxW bool: the mask's pixels that are the caller's guess, not the user's word)."""
    h, w = rgb.shape[:2]
    if (mask is None) == (box is None):
        raise InputError("give exactly one foreground hint: a mask or a box")
    progress("hint", 0.0)
    if mask is not None:
        if mask.shape[:2] != (h, w):
            raise InputError(f"mask is {mask.shape[1]}x{mask.shape[0]}, image is {w}x{h}: sizes must match")
        mask = check_mask(mask)
    else:
        mask = mask_from_box(rgb, box)  # type: ignore[arg-type]
    if options.alpha_mode == "mask":
        return mask.copy()
    if matte is None and options.matting == "vitmatte":  # the caller's to build it (pipeline.matte_method)
        raise ValueError("matting 'vitmatte' needs its model: pass matte")
    strongest = float(mask.max())
    if strongest < 0.5:  # matting keeps what the hint marks as mostly the object's: here nothing (its layer empty)
        raise InputError(f"the selection is faint: its strongest value is {strongest * 255:.0f}/255, under half, so "
                         "it marks no pixel as the object's", "select the object at full strength, or take the "
                         "selection as the exact alpha: the docker's 'Use the selection as the exact alpha', the "
                         "CLI's --alpha-mode mask")
    info["matting"] = "closed-form" if matte is None else "vitmatte"  # the one learned matting (options.MATTINGS)
    progress("trimap", 0.05)
    ramp = selection_ramp(mask)  # feathered or hard: the trimap's band, and whether the matting may hold the mask
    trimap, firm = trimap_and_strands(mask, options.band, ramp)
    if box is not None:  # a box is a promise: nothing outside it belongs to the foreground
        trimap[~box_region(box, h, w)] = 0.0
    info["unknown_fraction"] = round(float(np.mean(trimap == UNKNOWN)), 4)
    progress("matting", 0.1)
    if matte is not None:
        return matte(rgb, trimap, sub_progress(progress, 0.1, METHOD_SHARE[0]))
    hold = box is None and ramp < FEATHER_MIN_RAMP_PX  # the user's own hard mask (not GrabCut's, not feathered)
    return estimate_alpha(rgb, trimap, prior=mask, firm=firm, hold=hold, guessed=guessed)


def split_layer(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    box: tuple[int, int, int, int] | None = None,
    options: SplitOptions | None = None,
    progress: ProgressFn = no_progress,
    method: LayerMethod | None = None,
    overwrite_input: bool = False,
    matte: MatteFn | None = None,
    guessed: np.ndarray | None = None,
) -> SplitResult:
    """Split a layer (HxWx3 or HxWx4 in [0,1]) given a mask (HxW, soft allowed) or a box.

    `method` estimates the layers (default: the offline classical method); its guesses always pass through
    the exact composition step, so the layers recomposite to the input. `overwrite_input`: a caller that no
    longer needs `image` (float32 RGBA) lets its buffer become the background layer (a 4096^2 canvas: 268 MB
    less at the peak). `guessed`: split_alpha's."""
    options = options or SplitOptions()
    if method is None:
        from .classical import classical_method

        method = classical_method(options.fill)
    timer = StageTimer(progress)
    given = image
    image = check_image(image)
    reuse = overwrite_input and image is given and image.shape[2] == 4
    h, w = image.shape[:2]
    rgb = image[..., :3]
    layer_alpha = image[..., 3] if image.shape[2] == 4 else None
    check_shows(image)
    info: dict[str, Any] = {"method": method.name, "alpha_mode": options.alpha_mode,
                            "hint": "mask" if box is None else "box"}
    if method.fill:
        info["fill"] = method.fill
    alpha = split_alpha(rgb, mask, box, options, timer, info, matte, guessed)
    del mask, guessed  # memory: not needed from here on
    if layer_alpha is not None:
        alpha[layer_alpha <= 0] = 0.0
    if options.quantize:
        alpha = np.round(alpha * options.quantize) / options.quantize
    alpha = alpha.astype(np.float32)

    # Outside the object's box (plus a margin of context) alpha is 0: F is never seen and B = C, so a local
    # method runs on that crop only.
    crop = object_crop(alpha, context_margin(alpha, method.context)) if method.local else (slice(0, h), slice(0, w))
    c_rgb, c_alpha = rgb[crop], alpha[crop]
    fg_est, bg_guess = method.layers(c_rgb, c_alpha, sub_progress(timer, *METHOD_SHARE))
    timer("layers", METHOD_SHARE[1])
    c_fg, c_bg, fallback = compose_layers(c_rgb, c_alpha, fg_est, bg_guess, method.composition)
    del fg_est, bg_guess  # memory: the full-size layers are allocated next
    info["composition"] = method.composition
    if method.composition == LEAST_CHANGE:  # the share of mixed pixels where clipping needed the projection
        info["composition_fallback"] = round(fallback, 4)
    info["recomposition_error"] = recomposition_error(c_rgb, c_alpha, c_fg, c_bg)
    info["crop"] = [int(v) for v in (crop[1].start, crop[0].start, crop[1].stop, crop[0].stop)]  # msgpack-able
    # each layer written once into its final RGBA array (on a 4096^2 canvas every extra copy is 256 MB), the crop's
    # own copy freed before the next is allocated; copy-through outside the crop: F = B = C where alpha = 0
    foreground = np.empty((h, w, 4), np.float32)
    foreground[..., :3] = rgb
    foreground[crop + (slice(0, 3),)] = c_fg
    del c_fg
    if layer_alpha is None or layer_alpha.min() >= 1.0:  # an opaque layer (the usual paint layer): a_F = a, a_B = 1
        foreground[..., 3], background_alpha = alpha, 1.0
    else:
        foreground[..., 3], background_alpha = layer_alphas(layer_alpha, alpha)
    background = image if reuse else np.empty((h, w, 4), np.float32)
    if not reuse:
        background[..., :3] = rgb
    background[crop + (slice(0, 3),)] = c_bg
    del c_bg
    background[..., 3] = background_alpha
    timer("done", 1.0)
    info["timings"] = timer.timings
    info["foreground_fraction"] = round(float(np.mean(alpha)), 4)
    return SplitResult(foreground, background, alpha, info)
