"""A job's peak memory, estimated before it starts, so the server refuses what would not fit its budget.

A split's memory follows what it works on more than its canvas: the trimap's unknown band (matting), the object's
crop (the layer method), the texture fill's working level and the mixed pixels, and these follow the selection's
shape. So the estimate reads them from the request (split_work: the selection a few rows at a time, or the box),
as the split would make them, cheaply: milliseconds and a few MB for a 4096^2 selection. A noise mask's band is
its whole box; two far corner pixels make the crop the whole canvas and a hole too small for a reduced-size fill.

The figures are measured: `python benchmarks/bench_job_memory.py` runs objects filling 1024^2 to 4096^2 canvases,
a small object on a big one, box and mask hints, u8 and f32 layers, and shapes that stress the rest (noise,
strips, corner pixels, islands, a thin line, a feathered ramp) through the server's job code and prints the
measured peak beside this estimate. Run it again whenever the pipeline changes and update the constants here; the
estimate must stay within 1.25x of every measured peak (above it, preferably: refusing a job that would fit is the
cheaper mistake).
"""

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from layering_protocol import Generate, Peel, Split, SplitLayers

from .errors import NotAvailable
from .imaging.matting import MAX_UNKNOWN
from .imaging.patchmatch import FEATURE_LEVELS_FINER, MAX_WORK_PIXELS, MIN_SOURCE_CENTRES, PATCH_RADIUS
from .imaging.trimap import (
    BAND_FRACTION,
    BAND_MAX_PX,
    BAND_MIN_PX,
    FEATHER_BAND_PER_RAMP,
    FEATHER_BAND_PX,
    FEATHER_MIN_RAMP_PX,
    FEATHER_RAMP_FREE_PX,
    SOFT_HI,
    SOFT_LO,
    THIN_BAND_PX,
    THIN_INNER_PX,
    THIN_MIN_PX,
    THIN_PX,
    strand_zone,
)
from .models import REGISTRY
from .options import DEFAULT_FILL
from .stages.classical import HOLE_GROW_PX, TEXTURE_FROM_ALPHA
from .stages.split import CROP_MARGIN_PX
from .wire import NP_DTYPES, SCALE, mask_channel

# Offline split: RSS above the job's start (its input received), fitted on benchmarks/bench_job_memory.py's shapes
# (2 cores, 2026-12-05). The peak is the largest of three phases, each the canvas's own arrays (the layer and the mask
# as float32, the trimap, alpha, the result's layers and frames) plus what that phase works on:
#   matting: each unknown pixel of the trimap (its sparse system and factorisation, about 2 KB; past MAX_UNKNOWN the
#            band is solved at reduced size) and each pixel of the band's box (index, image and guided-filter arrays);
#   layers:  each pixel of the object's crop (foreground estimation, the background guess, the fill's full-size
#            passes), of the texture fill's energy level and working level, and each patch there that overlaps the hole;
#   output:  the result's full-size layers and frames, the crop's layers copied in, and the composition step's
#            per-pixel work on the mixed pixels (0 < alpha < 1).
MATTING_CANVAS_BYTES_PER_PIXEL = 28
MATTING_BYTES_PER_UNKNOWN = 2080
MATTING_BOX_BYTES_PER_PIXEL = 27
LAYERS_FIXED_BYTES = 100 << 20
LAYERS_CANVAS_BYTES_PER_PIXEL = 13
LAYERS_CROP_BYTES_PER_PIXEL = 83
FILL_ENERGY_BYTES_PER_PIXEL = 26
FILL_LEVEL_BYTES_PER_PIXEL = 58
FILL_TARGET_BYTES = 52
OUTPUT_FIXED_BYTES = 90 << 20
OUTPUT_CANVAS_BYTES_PER_PIXEL = 35
OUTPUT_CROP_BYTES_PER_PIXEL = 51
OUTPUT_MIXED_BYTES = 45
WIDE_OUTPUT_BYTES_PER_BYTE = 2  # per byte of the layer beyond 8-bit RGBA (u16, f16, f32): the result's frames
# A diffusion or vision model working at the job's size on the CPU (activations, VAE decoding): an allowance,
# not measured here (no weights on the machines this was written on); on a GPU they live in its memory.
MODEL_BYTES_PER_PIXEL = 3072
# A model that works at its own fixed size on the object's crop, on the CPU (LaMa: 512 x 512 whatever the canvas):
# its working memory, an allowance as above.
FIXED_SIZE_MODEL_BYTES = {"lama": 2 << 30}
# A model that works in tiles of a fixed size on the CPU (ViTMatte: stages/learned_matte.TILE a side at most,
# whatever the canvas), or in the GPU's memory on a GPU: its working memory there. ViTMatte-S's full-size
# architecture measured 1.64 GB above its load for full 1024 px tiles (benchmarks/bench_learned_matte.py, 2 cores).
TILED_MODEL_BYTES = {"vitmatte": 2 << 30}
STAGE2 = ("grounding-dino", "sam", "vitmatte")
# split_layers (stages/peel.py), beyond its largest object's split: the layer as it came (the first split does not
# overwrite it: the stack is checked against it at the end), each object's finished layer (8-bit RGBA when the result
# is 8-bit, else float32), the front objects' area and the completion under them (a byte each), and the end's stack
# check (the composite and a layer's float temporaries) and frames.
# Counted from the arrays the code makes, not fitted (bench_layers.py measures the CLI's peel).
PEEL_CHECK_BYTES_PER_PIXEL = 66
AUTO_OBJECTS = 8  # objects an automatic split is counted for before it finds them (a worker past its share stops)
MASK_ROWS = 256  # the selection is read at least this many rows at a time (even: 2x2 blocks stay whole)
MASK_CHUNK = 1 << 20  # and about this many pixels: a few MB of temporaries, few rounds, whatever the shape
LABEL_CHUNK = 1 << 20  # label_boxes' pixels at a time
# admission (estimate_job's `least`, on the server's own thread) reads a selection or labels up to this many pixels
# (about a second of reading at most); a larger canvas is admitted on its pixels alone, and the worker's full
# estimate, off that thread, refuses it if its work does not fit
ADMIT_SCAN_PIXELS = 1 << 25


@dataclass(frozen=True)
class Estimate:
    nbytes: int
    what: str  # "a 4096x4096 split" ...


@dataclass(frozen=True)
class SplitWork:
    """What drives a split's memory beyond its canvas, in pixels, as read from the request before it runs."""

    crop: int  # the object's box plus context: where the layer method works
    unknown: int  # the trimap's unknown band (matting's system)
    box: int  # the unknown band's box plus matting's margin
    mixed: int = 0  # pixels of 0 < alpha < 1 (the composition step's per-pixel work): the band, or the soft pixels
    energy: int = 0  # the texture fill's texture-energy level (0: no texture fill)
    level: int = 0  # the texture fill's working level, where the patch search runs (0: none)
    targets: int = 0  # the patches there that overlap the hole


def split_bytes(pixels: int, crop_pixels: int | None = None, wide_bytes: int = 0,
                work: SplitWork | None = None) -> int:
    """A split of a canvas of `pixels` whose object's box (plus context) has `crop_pixels` (None: the canvas);
    `wide_bytes`: bytes of the layer's frame beyond 8-bit RGBA; `work`: what the request says of the band and the
    fill (mask_work, object_work), else an object filling its crop (object_work)."""
    crop = pixels if crop_pixels is None else min(pixels, crop_pixels)
    if work is None:
        work = object_in_crop(crop)
    matting = (MATTING_CANVAS_BYTES_PER_PIXEL * pixels + MATTING_BYTES_PER_UNKNOWN * min(work.unknown, MAX_UNKNOWN)
               + MATTING_BOX_BYTES_PER_PIXEL * work.box)
    layers = (LAYERS_FIXED_BYTES + LAYERS_CANVAS_BYTES_PER_PIXEL * pixels + LAYERS_CROP_BYTES_PER_PIXEL * work.crop
              + FILL_ENERGY_BYTES_PER_PIXEL * work.energy + FILL_LEVEL_BYTES_PER_PIXEL * work.level
              + FILL_TARGET_BYTES * work.targets)
    output = (OUTPUT_FIXED_BYTES + OUTPUT_CANVAS_BYTES_PER_PIXEL * pixels + OUTPUT_CROP_BYTES_PER_PIXEL * work.crop
              + OUTPUT_MIXED_BYTES * min(work.mixed, work.crop) + WIDE_OUTPUT_BYTES_PER_BYTE * wide_bytes)
    return max(matting, layers, output)


def work_options(options: dict[str, Any]) -> tuple[int | None, bool, str]:
    """(band, exact alpha, fill) of a request's split options, as the work estimates read them."""
    band = options.get("band") if isinstance(options.get("band"), int) else None
    return band, options.get("alpha_mode") == "mask", options.get("fill", DEFAULT_FILL)


def split_work(message: Any, least: bool = False) -> SplitWork | None:
    """What the split of a Split/Peel request will work on, from its selection or its box; None when the
    whole canvas is worked on by a model's mask (a phrase) or the selection cannot be read. `least`: a canvas past
    ADMIT_SCAN_PIXELS is not read: the least work of any selection (none beyond the canvas's own)."""
    w, h = message.image.width, message.image.height
    band, exact, fill = work_options(message.options or {})
    if message.box is not None and len(message.box) == 4:
        return box_work(message.box, w, h, band, exact, fill)
    if least and w * h > ADMIT_SCAN_PIXELS:
        return SplitWork(0, 0, 0)
    mask = message.mask
    if mask is None or mask.dtype not in NP_DTYPES or (mask.width, mask.height) != (w, h) or \
            memoryview(mask.data).nbytes != mask.expected_nbytes:
        return None
    data = np.frombuffer(mask.data, NP_DTYPES[mask.dtype]).reshape(h, w, mask.channels)[..., mask_channel(mask.order)]
    return mask_work(data, band, exact, fill, SCALE[mask.dtype])


def mask_work(mask: np.ndarray, band: int | None = None, exact: bool = False, fill: str = DEFAULT_FILL,
              scale: float = 255.0) -> SplitWork:
    """What a split works on for a selection (HxW, 1.0 at `scale`: a u8 frame's channel), read a few rows at a
    time: its bounding box grown by the band and the context (the crop, matting's box), the unknown band as the
    trimap would make it (band_radius from its area and ramp; the pixels that near its edge, plus its soft pixels
    unless feathered), the mixed pixels, and the texture fill's levels (the hole's size sets its working level; a
    level whose source, the pixels the selection leaves clear, holds no whole patch is skipped, as the fill skips
    it). `band`: the band option; `exact`: alpha_mode "mask" (no matting)."""
    h, w = mask.shape
    if mask.dtype.kind in "ui":  # the split's thresholds on values / scale, as integers of the frame
        half, lo, hi, fill_from = (int(np.ceil(0.5 * scale)), int(np.floor(SOFT_LO * scale)) + 1,
                                   int(np.ceil(SOFT_HI * scale)) - 1, int(np.ceil(TEXTURE_FROM_ALPHA * scale)))
    else:
        half, lo, hi, fill_from = 0.5 * scale, np.nextafter(SOFT_LO * scale, np.inf), \
            np.nextafter(SOFT_HI * scale, -np.inf), TEXTURE_FROM_ALPHA * scale
    # rows and columns with any pixel selected at all, beyond the soft threshold, at least half
    spans = {name: (np.zeros(h, bool), np.zeros(w, bool)) for name in ("any", "kept", "hard")}
    hard = soft = hole = edges = 0
    # blocks of 2x2 pixels: with a pixel of the hard selection, with a soft pixel, with an edge pixel of the hard one
    hard_blocks, soft_blocks, edge_blocks = (np.zeros(((h + 1) // 2, (w + 1) // 2), bool) for _ in range(3))
    last = None
    step = _rows_at_a_time(w)
    for y in range(0, h, step):
        part = mask[y:y + step]
        n = part.shape[0]
        on = part >= half
        for name, selected in (("any", part > 0), ("kept", part >= lo), ("hard", on)):
            spans[name][0][y:y + n] = selected.any(axis=1)
            spans[name][1][:] |= selected.any(axis=0)
        hard += np.count_nonzero(on)
        mixed = (part >= lo) & (part <= hi)
        soft += np.count_nonzero(mixed)
        hole += np.count_nonzero(part >= fill_from)
        edge = np.zeros(on.shape, bool)  # the pixel after each change of the hard selection, along x or y
        np.not_equal(on[:, 1:], on[:, :-1], out=edge[:, 1:])
        down = on[1:] != on[:-1]
        edge[1:] |= down
        edges += np.count_nonzero(edge[:, 1:]) + np.count_nonzero(down)
        if last is not None:
            across = on[0] != last
            edge[0] |= across
            edges += np.count_nonzero(across)
        last = on[-1]
        block = slice(y // 2, (y + n + 1) // 2)
        hard_blocks[block], soft_blocks[block], edge_blocks[block] = _pool(on), _pool(mixed), _pool(edge)
    hard, soft, hole, edges = int(hard), int(soft), int(hole), int(edges)
    feathered = False
    if exact:
        r = 0
    elif band is not None:
        r = max(1, int(band))
    else:  # trimap.band_radius, the contour's length from its edge pixels (L1 length: pi/4 on average)
        ramp = soft / (edges * np.pi / 4) if edges else 0.0
        feathered = ramp >= FEATHER_MIN_RAMP_PX
        radius = BAND_FRACTION * np.sqrt(hard)
        if feathered:
            radius = max(radius, FEATHER_BAND_PX + FEATHER_BAND_PER_RAMP * max(0.0, ramp - FEATHER_RAMP_FREE_PX))
        r = int(np.clip(round(radius), BAND_MIN_PX, BAND_MAX_PX))
    # where alpha can be above 0: the selection itself (exact), else the trimap's: a feathered selection's band
    # replaces its ramp, an unfeathered one's soft pixels are unknown
    rows, cols = spans["any" if exact else "hard" if feathered else "kept"]
    if not rows.any():
        return SplitWork(0, 0, 0)  # an empty selection: refused before any work
    y0, y1 = np.flatnonzero(rows)[[0, -1]]
    x0, x1 = np.flatnonzero(cols)[[0, -1]]
    # trimap_and_strands's zone: an automatic band, not feathered, and narrower than the strands' (a wider 2% band
    # already holds every pixel the zone would add)
    strands = None if exact or band is not None or feathered or r >= THIN_BAND_PX else _strand_blocks(hard_blocks, r)
    reach = r if strands is None else THIN_BAND_PX  # the band, and so alpha, reach this far past the selection
    box = _grown(x0, y0, x1 + 1, y1 + 1, w, h, reach)
    crop = _grown(x0, y0, x1 + 1, y1 + 1, w, h, reach + CROP_MARGIN_PX)
    unknown = 0 if exact else min(_area(box), _band_pixels(edge_blocks, None if feathered else soft_blocks, r,
                                                             strands))
    work = SplitWork(_area(crop), unknown, 0 if exact else _area(crop), min(soft, _area(crop)) if exact else unknown)
    if fill != "texture" or hole == 0:
        return work
    hole += edges * HOLE_GROW_PX  # grown by HOLE_GROW_PX all round
    finest = _finest_level(hole)
    work = replace(work, energy=_at_level(work.crop, finest - FEATURE_LEVELS_FINER))
    # the fill's source (alpha < SOURCE_ALPHA): outside the selection, its feathered ramp but for the band included
    levels = [hard_blocks if feathered and not exact else hard_blocks | soft_blocks]
    for _ in range(1, finest):
        levels.append(_pool(levels[-1]))
    for k in range(finest, -1, -1):  # the fill's working level: its planned one, else the first finer with source
        if k:
            centres = _source_centres(levels[k - 1], k, crop)
        else:
            centres = _clear_pixels(mask, crop, half if feathered and not exact else lo)
        if centres >= MIN_SOURCE_CENTRES:
            level = _at_level(work.crop, k)
            return replace(work, level=level, targets=min(level, _targets(hole, edges, k)))
    return work  # no level holds a whole patch of source: the fill keeps its guess


def box_work(box: Any, w: int, h: int, band: int | None = None, exact: bool = False,
             fill: str = DEFAULT_FILL) -> SplitWork:
    """object_work for a box hint as sent (x0, y0, x1, y1 in any order, maybe past the canvas): clipped first."""
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = sorted((min(max(x0, 0), w), min(max(x1, 0), w)))
    y0, y1 = sorted((min(max(y0, 0), h), min(max(y1, 0), h)))
    return object_work(x0, y0, x1, y1, w, h, band, exact, fill)


def object_work(x0: int, y0: int, x1: int, y1: int, w: int, h: int, band: int | None = None, exact: bool = False,
                fill: str = DEFAULT_FILL) -> SplitWork:
    """What a split works on for an object in a box (a box hint: what GrabCut will find is not known yet), taken as
    the ellipse inscribed in the box: its area sets the band's width and the fill's level, its edge the band."""
    bw, bh = max(1, x1 - x0), max(1, y1 - y0)
    r = 0 if exact else max(1, int(band)) if band is not None else int(
        np.clip(round(BAND_FRACTION * np.sqrt(np.pi / 4 * bw * bh)), BAND_MIN_PX, BAND_MAX_PX))
    crop = _area(_grown(x0, y0, x1, y1, w, h, r + CROP_MARGIN_PX))
    box = _area(_grown(x0, y0, x1, y1, w, h, r))
    unknown = 0 if exact else min(box, 2 * (bw + bh) * (2 * r + 1))
    work = SplitWork(crop, unknown, 0 if exact else crop, unknown)
    if fill != "texture":
        return work
    edges = 2 * (bw + bh)
    hole = np.pi / 4 * bw * bh + edges * HOLE_GROW_PX
    finest = _finest_level(hole)
    level = _at_level(crop, finest)
    return replace(work, energy=_at_level(crop, finest - FEATURE_LEVELS_FINER), level=level,
                   targets=min(level, _targets(hole, edges, finest)))


def object_in_crop(crop: int, fill: str = DEFAULT_FILL) -> SplitWork:
    """An object filling a square crop of `crop` pixels but for the context around it (a header-only estimate)."""
    side = max(1, round(np.sqrt(crop)) - 2 * CROP_MARGIN_PX)
    work = object_work(0, 0, side, side, side, side, fill=fill)
    return replace(work, crop=crop, box=crop)


def _strand_blocks(hard: np.ndarray, r: int) -> np.ndarray | None:
    """trimap_and_strands's widened band for strands on blocks of 2x2 pixels (`hard`: the blocks with a pixel of
    the hard selection): the blocks within THIN_BAND_PX of its thin parts, THIN_BAND_PX outside its edge and
    THIN_INNER_PX inside, None where it does not widen. Thin parts at this scale are a block wide, so strands of
    two pixels or three count; a sliver may read as a body here (an estimate above the split's, the safe side)."""
    hard = hard.view(np.uint8)
    inside = cv2.distanceTransform(hard, cv2.DIST_L2, cv2.DIST_MASK_5)
    outside = cv2.distanceTransform(1 - hard, cv2.DIST_L2, cv2.DIST_MASK_5)
    half = r / 2
    sure = inside > half if float(inside.max()) > half else hard > 0
    reach, inner = THIN_BAND_PX / 2, THIN_INNER_PX / 2
    near = strand_zone(hard, inside, sure, reach, inner, THIN_PX / 2, max(1, THIN_MIN_PX // 4))
    return None if near is None else near & (inside <= inner) & (outside <= reach)


def _band_pixels(edge: np.ndarray, soft: np.ndarray | None, r: int, strands: np.ndarray | None = None) -> int:
    """Pixels within `r` of the hard selection's edge (trimap_from_mask's band), and the soft ones if given, counted
    on blocks (of 2x2 pixels in `edge` and `soft`; merged up to blocks of r / 16 to r / 8 for a wide band): the blocks
    within r of a block with an edge pixel (a band of a few pixels: a block's width either side of its edge), and
    the strands' wider band (_strand_blocks, only with a band narrower than 16 px: blocks of 2x2)."""
    size = 2
    while size * 16 <= r:
        edge, soft, size = _pool(edge), None if soft is None else _pool(soft), size * 2
    if not edge.any():
        band = np.zeros(edge.shape, bool)
    else:
        far = cv2.distanceTransform((~edge).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
        reach = r / size
        band = far <= (reach - 0.5 if reach >= 2 else reach)  # from block centres; a narrow band: its blocks whole
    if soft is not None:
        band |= soft
    if strands is not None:
        band |= strands
    return int(np.count_nonzero(band)) * size * size


def _pool(a: np.ndarray) -> np.ndarray:
    """Blocks of 2x2 with any pixel set (the last row / column of an odd size alone)."""
    h, w = a.shape
    if h % 2 or w % 2:
        a = np.pad(a, ((0, h % 2), (0, w % 2)))
    return a[0::2, 0::2] | a[1::2, 0::2] | a[0::2, 1::2] | a[1::2, 1::2]


def _source_centres(pooled: np.ndarray, k: int, crop: tuple[int, int, int, int]) -> int:
    """The fill's whole-patch source centres at level k >= 1 (patchmatch.completion._Level.valid): blocks of 2^k
    pixels of the crop, none of them selected, farther than the patch radius plus the hole's growth from a selected
    block. `pooled`: blocks of 2^k with any selected pixel."""
    size = 2 ** k
    x0, y0, x1, y1 = crop
    sub = pooled[y0 // size:-(-y1 // size), x0 // size:-(-x1 // size)].view(np.uint8)
    reach = PATCH_RADIUS + -(-HOLE_GROW_PX // size)
    taken = cv2.dilate(sub, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8))
    inner = taken[PATCH_RADIUS:taken.shape[0] - PATCH_RADIUS, PATCH_RADIUS:taken.shape[1] - PATCH_RADIUS]
    return int(inner.size - np.count_nonzero(inner))


def _clear_pixels(mask: np.ndarray, crop: tuple[int, int, int, int], selected: float) -> int:
    """The fill's source centres at full size: pixels of the crop (less the patch radius at its border) with no
    pixel of the mask at `selected` or above within the patch radius plus the hole's growth, a few rows at a time."""
    x0, y0, x1, y1 = crop
    reach, edge = PATCH_RADIUS + HOLE_GROW_PX, PATCH_RADIUS
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    clear = 0
    step = _rows_at_a_time(x1 - x0)
    for y in range(y0 + edge, y1 - edge, step):
        y_end = min(y + step, y1 - edge)
        top, bottom = max(y0, y - reach), min(y1, y_end + reach)
        taken = cv2.dilate((mask[top:bottom, x0:x1] >= selected).view(np.uint8), kernel)
        inner = taken[y - top:y_end - top, edge:x1 - x0 - edge]
        clear += inner.size - np.count_nonzero(inner)
    return int(clear)


def _rows_at_a_time(w: int) -> int:
    """Rows of a w-wide mask to read at once: MASK_CHUNK pixels, at least MASK_ROWS, even (2x2 blocks stay whole),
    so that a strip one pixel wide and millions long takes a few rounds, not one per MASK_ROWS."""
    return max(MASK_ROWS, MASK_CHUNK // max(1, w)) // 2 * 2


def _targets(hole: float, edges: int, k: int) -> int:
    """Pixels of level k whose patch overlaps the hole (`hole` pixels, its edge `edges` long at full size)."""
    return int((hole + edges * PATCH_RADIUS * 2 ** k) / 4 ** k)


def _finest_level(hole: float) -> int:
    """patchmatch.completion._plan: the finest level keeps at most MAX_WORK_PIXELS pixels of the hole."""
    return max(0, int(np.ceil(0.5 * np.log2(max(hole, 1) / MAX_WORK_PIXELS))))


def _at_level(pixels: int, k: int) -> int:
    return -(-pixels // 4 ** max(0, k))


def _grown(x0: int, y0: int, x1: int, y1: int, w: int, h: int, m: int) -> tuple[int, int, int, int]:
    return max(0, int(x0) - m), max(0, int(y0) - m), min(w, int(x1) + m), min(h, int(y1) + m)


def _area(box: tuple[int, int, int, int]) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx")


def registry_bytes(name: str) -> int:
    """A model's weights as the registry gives them (the default models' sizes)."""
    return int(REGISTRY[name].size_gb * 1e9)


def folder_bytes(folder: str | Path) -> int:
    """Weight files under a model folder (a Hugging Face snapshot links them: sizes follow the links)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(WEIGHT_SUFFIXES):
                try:
                    total += os.path.getsize(os.path.join(root, name))
                except OSError:
                    pass
    return total


def weight_bytes(models: Any) -> Callable[[str], int]:
    """Bytes a job reads into memory to load each model: 0 when it is loaded already (its weights are in
    the RSS) or missing (the job fails with not_available before loading anything), else its folder's
    weight files."""
    loaded = models.loaded()

    def size(name: str) -> int:
        if name in loaded:
            return 0
        try:
            return folder_bytes(models.resolve(name))
        except NotAvailable:
            return 0

    return size


def models_needed(message: Any) -> list[str]:
    if isinstance(message, Generate):
        control = message.options.get("control")
        return ["sdxl", *([f"controlnet-{control}"] if control in ("canny", "depth") else []), *STAGE2]
    if isinstance(message, SplitLayers):
        names: list[str] = list(STAGE2) if message.phrases else ["sam", "depth-anything"] if message.auto else []
    elif not isinstance(message, (Split, Peel)):
        return []
    else:
        names = list(STAGE2) if message.phrase and message.mask is None and message.box is None else []
    if message.options.get("matting") == "vitmatte" and message.options.get("alpha_mode") != "mask" \
            and "vitmatte" not in names:
        names.append("vitmatte")  # a selection's or a label's learned matting (with "auto" only on a GPU)
    layering = message.options.get("layering")
    if layering == "fbdd":
        names.append("layering")
    elif layering == "zero-shot":
        names.append("sd2-inpaint")
    elif message.options.get("fill") == "lama":
        names.append("lama")
    return names


def estimate_job(message: Any, weights: Callable[[str], int] = registry_bytes, on_gpu: bool = False,
                 least: bool = False) -> Estimate:
    """Peak bytes a job adds to the server's RSS. `weights(name)`: bytes loading that model reads into
    memory; `on_gpu`: the models' working memory is the GPU's; `least`: a quick lower bound where the exact figure
    takes long to find (a label layer's objects: colour_count), for admission on the server's own thread."""
    names = models_needed(message)
    whole = [n for n in names if n not in FIXED_SIZE_MODEL_BYTES and n not in TILED_MODEL_BYTES]  # at its size
    models = sum(weights(n) for n in names) + sum(FIXED_SIZE_MODEL_BYTES.get(n, 0) for n in names)
    if not on_gpu:
        models += sum(TILED_MODEL_BYTES.get(n, 0) for n in names)
    if whole and not on_gpu:
        models += MODEL_BYTES_PER_PIXEL * _pixels(message)
    if isinstance(message, Generate):
        return Estimate(split_bytes(_pixels(message)) + models, f"generating {message.width}x{message.height}")
    if isinstance(message, (Split, Peel)):
        image = message.image
        w, h = image.width, image.height
        wide = max(0, image.expected_nbytes - 4 * w * h)
        work = None if whole else split_work(message, least)  # stage 2 and generative layering see it all
        return Estimate(split_bytes(w * h, None if work is None else work.crop, wide, work) + models,
                        f"a {w}x{h} {message.TYPE}")
    if isinstance(message, SplitLayers):
        return Estimate(split_layers_bytes(message, whole, least) + models,
                        f"a {message.image.width}x{message.image.height} split into layers")
    return Estimate(0, type(message).__name__)


def split_layers_bytes(message: SplitLayers, whole: bool = False, least: bool = False) -> int:
    """Its largest object's split (each object's box from the labels, as a box hint's; `whole`: a model sees the
    whole canvas), plus what the peel holds beside it (PEEL_CHECK_BYTES_PER_PIXEL's comment). `least`:
    estimate_job's."""
    image, labels = message.image, message.labels
    w, h = image.width, image.height
    pixels = w * h
    wide = max(0, image.expected_nbytes - 4 * pixels)
    boxes: dict[int, tuple[int, int, int, int]] = {}
    readable = labels is not None and memoryview(labels.data).nbytes == labels.expected_nbytes and (
        labels.width, labels.height) == (w, h)
    if labels is None:  # phrases, or every object the models find (AUTO_OBJECTS counted): on the whole canvas
        count = len(message.phrases) if message.phrases else AUTO_OBJECTS
        boxes = dict.fromkeys(range(1, 1 + count), (0, 0, w, h))
    elif readable and labels.order == "L" and least and pixels > ADMIT_SCAN_PIXELS:
        boxes = {1: (0, 0, 1, 1)}  # not read on the server's own thread: one object of one pixel, the least
    elif readable and labels.order == "L":
        from .stages.peel import completion_reach

        boxes = {}
        for k, (x0, y0, x1, y1) in label_boxes(labels).items():  # each completed behind the ones in front
            grow = completion_reach(y1 - y0, x1 - x0)
            boxes[k] = (max(0, x0 - grow), max(0, y0 - grow), min(w, x1 + grow), min(h, y1 + grow))
    elif readable:  # flat colours: their objects' boxes are not known before they are read
        boxes = dict.fromkeys(range(1, 1 + colour_count(labels, least)), (0, 0, w, h))
    options = message.options or {}
    band, exact, fill = work_options(options)
    largest = max((split_bytes(pixels, None if whole else work.crop, wide, None if whole else work)
                   for work in (object_work(*box, w, h, band, exact, fill) for box in boxes.values())),
                  default=split_bytes(pixels, None, wide))
    channels = 4 if image.channels in (2, 4) else 3
    eight_bit = image.dtype == "u8" and options.get("quantize", 255) == 255
    layer = 4 if eight_bit else 16  # a finished object's layer, per pixel
    frame = image.expected_nbytes // pixels if pixels else 0
    held = 4 * channels * pixels + len(boxes) * layer * pixels
    return largest + held + PEEL_CHECK_BYTES_PER_PIXEL * pixels + (len(boxes) + 1) * frame * pixels


def colour_count(labels: Any, least: bool = False) -> int:
    """How many objects a label image in flat colours has (stages/peel.object_colours, at full size: a small object,
    5 px across, is one; 0.4 s at 4096^2), at most 255 (more: the job itself says so, bad_input). `least`: on every
    4th pixel, 1/16 of the time: the objects about 12 px across and larger."""
    from .stages.peel import label_codes, object_colours

    data = np.frombuffer(labels.data, np.uint8).reshape(labels.height, labels.width, labels.channels)
    if least:
        data = np.ascontiguousarray(data[::4, ::4])
    return min(255, len(object_colours(*label_codes(data))))


def label_boxes(labels: Any) -> dict[int, tuple[int, int, int, int]]:
    """Each object label's box (x0, y0, x1, y1, exclusive) in an L u8 label image, read LABEL_CHUNK pixels at a time
    whatever its shape (a 1-row or 1-column image of millions of pixels too): tens of MB of temporaries, linear time
    (a stable argsort of bytes is a radix sort), on the server's own thread at admission."""
    w = labels.width
    flat = np.frombuffer(labels.data, np.uint8)[:w * labels.height]
    first = np.full(256, -1, np.int64)  # each label's first and last flat index (its rows), and its columns
    last = np.full(256, -1, np.int64)
    x0 = np.full(256, w, np.int64)
    x1 = np.full(256, -1, np.int64)
    for start in range(0, flat.size, LABEL_CHUNK):
        part = flat[start:start + LABEL_CHUNK]
        counts = np.bincount(part, minlength=256)
        present = np.flatnonzero(counts[1:]) + 1
        if not present.size:
            continue
        order = np.argsort(part, kind="stable")  # by label, each label's pixels in reading order
        ends = np.cumsum(counts)
        starts = (ends - counts)[present]
        first[present] = np.where(first[present] < 0, order[starts] + start, first[present])
        last[present] = order[ends[present] - 1] + start
        xs = (order + start) % w
        x0[present] = np.minimum(x0[present], np.minimum.reduceat(xs, starts))  # a label's run up to the next's
        x1[present] = np.maximum(x1[present], np.maximum.reduceat(xs, starts))  # (the labels between are absent)
    return {int(k): (int(x0[k]), int(first[k] // w), int(x1[k]) + 1, int(last[k] // w) + 1)
            for k in np.flatnonzero(first[1:] >= 0) + 1}


def _pixels(message: Any) -> int:
    image = getattr(message, "image", None)
    if image is not None:
        return int(image.width * image.height)
    return int(getattr(message, "width", 0)) * int(getattr(message, "height", 0))
