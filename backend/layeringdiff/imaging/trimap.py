"""Trimap construction from a user's mask or selection (the paper's erode/dilate step)."""

import cv2
import numpy as np

from ..errors import InputError

UNKNOWN = 0.5
# Band half-width as a fraction of the object's size (sqrt of its area), clamped in pixels.
BAND_FRACTION = 0.02
BAND_MIN_PX = 2
BAND_MAX_PX = 80
# A feathered selection (its soft ramp, SOFT_LO..SOFT_HI, is FEATHER_MIN_RAMP_PX wide or more on average) gets at least
# FEATHER_BAND_PX, plus FEATHER_BAND_PER_RAMP of its ramp beyond FEATHER_RAMP_FREE_PX, and only that band is unknown
# (not the whole ramp). Fitted on 60 generated feathered selections (benchmarks/edge_scenes.py TUNING_SEEDS +
# 24..59: object edges 1-21 px, feathers 2-16 px, selections up to 6 px off): 59 of 60 within 1.3x of the best of
# fixed 15/30/45 px bands (the one left wants 30 px for a 21 px soft edge under a 2 px feather, which the selection
# cannot tell).
FEATHER_MIN_RAMP_PX = 3.0
FEATHER_BAND_PX = 17.0
FEATHER_BAND_PER_RAMP = 0.25
FEATHER_RAMP_FREE_PX = 20.0
# Mask values strictly inside (SOFT_LO, SOFT_HI) are feathered selection edges: left unknown.
SOFT_LO = 0.02
SOFT_HI = 0.98
GRABCUT_ITERATIONS = 5
GRABCUT_SEED = 0
# Hair, fur and strands in a hard mask (a label map, alpha > 0.5) are its thin parts: pixels no deeper than THIN_PX
# that an opening by a disc of that radius removes, in pieces of THIN_MIN_PX pixels or more (not a step of the
# edge). Alpha around them spreads well past the 2% band, so within THIN_BAND_PX of them the automatic band reaches
# THIN_BAND_PX outside the mask and THIN_INNER_PX inside it (the body's edge at the strands' roots), and the split's
# matting holds its prior firmer there (matting.STRAND_PRIOR_WEIGHT). On bench_layers.py --bands (photo over photo,
# strands cut at alpha 0.5) the strands' soft-band error goes from 36-46/255 to 8-15/255 (a 16 px band everywhere:
# 13-27/255), while hard edges keep the 2% band (16 px would raise their alpha's error 10-20x). Reaches of 12/8 and
# 24/8 px, and 16/4 and 16/16, were each worse or slower on the same objects.
THIN_PX = 2.0
THIN_MIN_PX = 3
THIN_BAND_PX = 16
THIN_INNER_PX = 8
# ... where the body keeps this share of its sure pixels: a sliver (an object seen only in thin parts, a back object
# between front ones) keeps the 2% band, or the matting loses it (bench_layers' slivers keep 4-12%, bodies 39-87%).
THIN_BODY_KEPT = 0.25
# A narrow object, or a sliver (a back object seen between front ones), whose sure pixels are under this share of its
# hard ones: the band takes much of it, the few sure pixels left cannot teach the matting its colours, and the
# colour lines give the band away to what surrounds it. So the split's matting holds its prior firmer over its whole
# band, as at strands. bench_layers' slivers: soft-band error 65 -> 37, 89 -> 54, 78 -> 62/255, alpha IoU 0.68 ->
# 0.78. A disc of 20 px radius or more keeps 0.82 of its hard pixels sure, and its weak prior.
NARROW_SURE = 0.8


def check_mask(mask: np.ndarray) -> np.ndarray:
    """Validate a hint mask (HxW, [0,1]); return it as float32. Empty or full masks are input errors."""
    if mask.ndim != 2:
        raise InputError(f"mask must be one channel, got shape {mask.shape}")
    if not np.all(np.isfinite(mask)):
        raise InputError("mask contains NaN or infinite values")
    mask = np.clip(mask.astype(np.float32, copy=False), 0.0, 1.0)
    if not np.any(mask > SOFT_LO):
        raise InputError("the mask is empty: select or paint the foreground first")
    if np.all(mask >= SOFT_HI):
        raise InputError(
            "the mask covers the whole image: nothing would be left for the background",
            "select only the foreground object",
        )
    return mask


def selection_ramp(mask: np.ndarray) -> float:
    """Mean width (px) of the selection's soft ramp across its edge: soft pixels per pixel of the 0.5 contour."""
    hard = (mask >= 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(hard, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    length = sum(cv2.arcLength(c, True) for c in contours)
    soft = np.count_nonzero((mask > SOFT_LO) & (mask < SOFT_HI))
    return float(soft / length) if length > 0 else 0.0


def band_radius(mask: np.ndarray, ramp: float | None = None) -> int:
    """The unknown band's half-width: 2% of the object's size, and for a feathered selection (`ramp`, measured
    when not given) at least a fixed width, more for a very wide ramp (the selection's own imprecision)."""
    area = float(np.count_nonzero(mask >= 0.5))
    r = BAND_FRACTION * np.sqrt(area)
    ramp = selection_ramp(mask) if ramp is None else ramp
    if ramp >= FEATHER_MIN_RAMP_PX:
        r = max(r, FEATHER_BAND_PX + FEATHER_BAND_PER_RAMP * max(0.0, ramp - FEATHER_RAMP_FREE_PX))
    return int(np.clip(round(r), BAND_MIN_PX, BAND_MAX_PX))


def thin_parts(hard: np.ndarray, inside: np.ndarray, thin_px: float = THIN_PX,
               min_px: int = THIN_MIN_PX) -> np.ndarray:
    """The hard mask's (uint8 0/1) thin parts: pixels that an opening by a disc of `thin_px` removes, in 8-connected
    pieces of `min_px` or more. `inside`: each pixel's distance to the nearest one outside."""
    core = (inside > thin_px).astype(np.uint8)
    if core.any():
        opened = cv2.distanceTransform(1 - core, cv2.DIST_L2, cv2.DIST_MASK_5) <= thin_px + 0.5
    else:
        opened = np.zeros(hard.shape, bool)
    thin = ((hard > 0) & ~opened).astype(np.uint8)
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(thin, connectivity=8)
    keep = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_px)
    return np.isin(pieces, keep[keep > 0]) if count > 1 else np.zeros(hard.shape, bool)


def strand_zone(hard: np.ndarray, inside: np.ndarray, sure: np.ndarray, reach: float, inner: float,
                thin_px: float = THIN_PX, min_px: int = THIN_MIN_PX) -> np.ndarray | None:
    """Pixels within `reach` of the hard mask's thin parts (thin_parts), where the band widens to `reach` outside
    the mask and `inner` inside; None where there are none, or where the body would keep less than THIN_BODY_KEPT
    of its `sure` pixels (a sliver). The arguments in pixels, or all in blocks for job_memory's estimate."""
    thin = thin_parts(hard, inside, thin_px, min_px)
    if not thin.any():
        return None
    near = cv2.distanceTransform((~thin).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5) <= reach
    kept = np.count_nonzero(sure & ~(near & (inside <= inner)))
    return near if kept >= THIN_BODY_KEPT * np.count_nonzero(sure) else None


def trimap_from_mask(mask: np.ndarray, band: int | None = None) -> np.ndarray:
    """1 = sure foreground, 0 = sure background, 0.5 = unknown band around the mask's edge: trimap_and_strands's
    trimap."""
    return trimap_and_strands(mask, band)[0]


def trimap_and_strands(mask: np.ndarray, band: int | None = None,
                       ramp: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The trimap (1 = sure foreground, 0 = sure background, 0.5 = unknown band around the mask's edge, `band` px
    either side of its 0.5 contour; band_radius when None), and where the split's matting holds its prior firmer
    (None when nowhere): where it widened the band for strands, or a narrow object's whole band (NARROW_SURE).
    With a given band, or a selection that is not feathered, every soft mask pixel is unknown too; the automatic
    band of a feathered selection replaces its ramp. Unless the selection is feathered, the automatic band
    reaches at least THIN_BAND_PX outside the mask and THIN_INNER_PX inside within THIN_BAND_PX of the mask's thin
    parts (thin_parts: hair, strands) when the body keeps THIN_BODY_KEPT of its sure pixels: the strands' zone,
    where the split's matting holds its prior (the mask) more firmly (an object so big that its 2% band is wider
    has the zone for the prior alone).

    The band shrinks for thin objects so some sure foreground survives. Distances instead of an erosion by a
    disk, on the mask's box only: the cost follows the object, not the band's width or the canvas. `ramp`: the
    mask's selection_ramp where the caller has it already.
    """
    mask = check_mask(mask)
    if band is not None:
        ramp = 0.0
    elif ramp is None:
        ramp = selection_ramp(mask)
    feathered = ramp >= FEATHER_MIN_RAMP_PX
    r = band_radius(mask, ramp) if band is None else max(1, int(band))
    reach = max(r, THIN_BAND_PX) if band is None else r
    trimap = np.zeros(mask.shape, np.float32)
    h, w = mask.shape
    rows, cols = np.flatnonzero((mask > SOFT_LO).any(axis=1)), np.flatnonzero((mask > SOFT_LO).any(axis=0))
    box = (slice(max(0, rows[0] - reach - 2), min(h, rows[-1] + reach + 3)),
           slice(max(0, cols[0] - reach - 2), min(w, cols[-1] + reach + 3)))
    sub = mask[box]
    hard = (sub >= 0.5).astype(np.uint8)
    inside = cv2.distanceTransform(hard, cv2.DIST_L2, cv2.DIST_MASK_5)  # to the nearest pixel outside
    depth = float(inside.max())
    while depth <= r and r > 1:
        r //= 2
    part = np.full(sub.shape, UNKNOWN, np.float32)
    sure = inside > r if depth > r else hard > 0
    outside = cv2.distanceTransform(1 - hard, cv2.DIST_L2, cv2.DIST_MASK_5)
    far = outside > r
    strands = None
    # a feathered selection has its own wide band, and its prior must stay weak (matting.STRAND_PRIOR_WEIGHT)
    near = strand_zone(hard, inside, sure, reach, THIN_INNER_PX) if band is None and not feathered else None
    if near is not None:
        far &= ~near | (outside > reach)
        sure &= ~(near & (inside <= THIN_INNER_PX))
        strands = np.zeros(mask.shape, bool)
        strands[box] = near
    part[sure] = 1.0
    part[far] = 0.0
    if not feathered:
        part[(sub > SOFT_LO) & (sub < SOFT_HI)] = UNKNOWN
    trimap[box] = part
    if not np.any(trimap == 0.0):
        raise InputError("the mask leaves no background around the object",
                         f"select a smaller region, or narrow the band around its edge ({r} px here: the docker's "
                         "Edge, the CLI's --band)")
    if strands is None and band is None and not feathered and \
            np.count_nonzero(part == 1.0) < NARROW_SURE * np.count_nonzero(hard):
        strands = trimap == UNKNOWN  # narrow: the prior held firmer over the whole band
    return trimap, strands


def unknown_box(trimap: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The unknown band's bounding box grown by `margin` pixels, clipped to the picture; None without a band."""
    unknown = trimap == UNKNOWN
    rows, cols = np.flatnonzero(unknown.any(axis=1)), np.flatnonzero(unknown.any(axis=0))
    if rows.size == 0:
        return None
    h, w = trimap.shape
    return (slice(max(0, rows[0] - margin), min(h, rows[-1] + 1 + margin)),
            slice(max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin)))


def mask_from_box(image: np.ndarray, box: tuple[int, int, int, int], max_side: int = 512) -> np.ndarray:
    """Hard foreground mask from a box by GrabCut, run at reduced size for speed."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = sorted((min(max(x0, 0), w), min(max(x1, 0), w)))
    y0, y1 = sorted((min(max(y0, 0), h), min(max(y1, 0), h)))
    if x1 - x0 < 4 or y1 - y0 < 4:
        if x1 > x0 and y1 > y0:  # inside, but too small to hold an object and some of what is around it
            raise InputError(f"box {box} is only {x1 - x0}x{y1 - y0} px inside the {w}x{h} image",
                             "draw it around the whole object, at least 4 px each way")
        raise InputError(f"box {box} is empty or outside the {w}x{h} image")
    if (x1 - x0) >= w and (y1 - y0) >= h:
        raise InputError("the box covers the whole image: leave a margin of background around the object")
    scale = min(1.0, max_side / max(h, w))
    small = cv2.resize(image[..., :3], (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)
    small8 = (np.clip(small, 0, 1) * 255 + 0.5).astype(np.uint8)
    rect = (int(x0 * scale), int(y0 * scale),
            max(2, int((x1 - x0) * scale)), max(2, int((y1 - y0) * scale)))
    gc = np.zeros(small8.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(GRABCUT_SEED)  # its colour models start from k-means on OpenCV's RNG: the same box, the same mask
    try:
        cv2.grabCut(small8, gc, rect, bgd, fgd, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT)
    except cv2.error as exc:  # e.g. no background pixels left outside the box
        raise InputError(f"cannot find an object in box {box}", str(exc).strip().splitlines()[-1]) from None
    fg_small = np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
    mask = cv2.resize(fg_small, (w, h), interpolation=cv2.INTER_LINEAR)
    mask = (mask >= 0.5).astype(np.float32)
    if not mask.any():
        raise InputError(f"no object found inside box {box}", "draw the box tighter or give a mask")
    return mask
