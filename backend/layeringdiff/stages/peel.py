"""Several objects in one operation: peeled front to back, each split off the background the objects in front of it
left (its alpha matted on the image without them), so every layer recomposites exactly and the background is
completed behind all of them.

A back object's layer is completed a little way behind the objects in front of it (hidden_share): where its visible
part runs into a front object, its outline is taken to run on behind it, for as far as the visible part is deep and
no nearer to anything else visible. That edge is the front object's, not the back object's: matted as the back
object's own it cut a false soft edge into its layer (on bench_layers.py's scenes the back objects' soft-band error
fell, 74 -> 56, 27 -> 11, 37 -> 34, 14 -> 10.5/255, none rose by more than 0.7, on seeds 0-3), and the background
behind it kept a piece of the back object that showed when that was moved or hidden (now it is completed from what
surrounds the back object). What the completed part holds is the front object's fill (the surroundings' texture),
under the front object in the picture: it shows only when the artist hides or moves that one. Further in, the hidden
area stays transparent in the back object's layer: its shape cannot be known, and the front object's split completes
it in the background.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..errors import InputError
from ..imaging.compose import composite_error, composite_stack
from ..io.images import to_u8
from ..options import LayerMethod, MatteFn, SplitOptions
from ..progress import ProgressFn, no_progress, sub_progress
from .split import check_shows, check_size, split_layer


class LabelMasks(Sequence[np.ndarray]):
    """Each object's mask (HxW float32, 1 on its label), made when its turn comes: N masks held at once would cost
    4 bytes a pixel each."""

    def __init__(self, labels: np.ndarray, objects: list[int], names: list[str] | None = None) -> None:
        self.labels, self.objects = labels, objects
        self.names = names  # each object's in the user's words ("label 7", a colour), for messages

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]  # no slices needed
        return (self.labels == self.objects[i]).astype(np.float32)


def label_values(labels: np.ndarray) -> list[int]:
    """The object labels present (1..255), front first."""
    present = np.flatnonzero(label_counts(labels)[1:]) + 1
    return [int(k) for k in present]


# A value whose pixels nearly all lie between a lower and a higher neighbour (3x3) is a blend of those, not an
# object: what anti-aliasing, blurring or a smooth resize of a label map makes along every edge (a 0/85/170/255 map
# of three objects, blurred, gave 176 "objects", 142 of them under 50 pixels). A few may be objects (a 1-px outline
# numbered between its figure's fill and what is behind it); more are refused.
BETWEEN_SHARE = 0.9
MAX_BETWEEN_VALUES = 3


def label_counts(labels: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Pixels of each value 0..255 (HxW uint8 labels; `where`: HxW uint8, counted where nonzero), without
    np.bincount's 8-byte-a-pixel copy."""
    return cv2.calcHist([labels], [0], where, [256], [0, 256]).ravel()


def blended_labels(labels: np.ndarray, objects: list[int]) -> list[int]:
    """The label values (of `objects`) that lie only along the edges between lower and higher ones."""
    kernel = np.ones((3, 3), np.uint8)
    lower, higher = cv2.erode(labels, kernel), cv2.dilate(labels, kernel)  # each pixel's 3x3 min and max
    between = ((lower < labels) & (labels < higher)).view(np.uint8)
    counts, inside = label_counts(labels), label_counts(labels, between)
    return [k for k in objects if inside[k] >= BETWEEN_SHARE * counts[k]]


def check_labels(labels: np.ndarray, objects: list[int], thin: bool = False) -> list[int]:
    """A label file that leaves no pixel to the background is refused (check_background), and so is a label map
    smoothed at its edges: each blended value would become an object of its own. `thin`: the user says such values
    are objects (outlines a pixel wide). Returns the values that look like blends (for a note)."""
    check_background(labels, "every pixel has an object's label", "leave the background unlabelled, at 0")
    blended = blended_labels(labels, objects)
    if len(blended) > MAX_BETWEEN_VALUES and not thin:
        shown = ", ".join(map(str, blended[:8])) + (", ..." if len(blended) > 8 else "")
        raise InputError(f"the labels have {len(blended)} values found only along the edges between others ({shown}): "
                         "an anti-aliased, blurred or smoothly resized label map, where each would become an object",
                         "paint the labels with a hard-edged brush, without anti-aliasing, and resize them "
                         "with 'nearest neighbour'; if they are objects a pixel or two thin (outlines, line art), "
                         "add --thin-labels")
    return blended


def check_background(labels: np.ndarray, what: str, hint: str) -> None:
    """Labels (HxW uint8, 0 the background) with no background pixel: the backmost object's split would have
    nothing behind it to learn from (its mask, run on under the objects in front, the whole picture)."""
    if not np.any(labels == 0):
        raise InputError(f"{what}: none is left to show the background", hint)


ROWS = 256  # rows worked on at a time
# A colour is an object where it is painted flat: this many of its pixels have all 8 neighbours in the same colour
# (a 5x5 dab has 9). A brush's anti-aliased edge, or the blends where two colours meet, are lines a pixel or two wide
# with no such pixel, however long the edge (a straight soft edge repeats one blend colour along all of it), while an
# object of any size has them: the rule that took a colour for an object by its share of the painted pixels (0.2%)
# merged a 43x43 bird on a 2000x1500 label layer into the hill beside it.
MIN_INTERIOR_PIXELS = 9
# A label layer's pixel is painted from this alpha, or from half the layer's strongest where that is less (labels
# painted with a brush at 40% opacity: their strokes 102, their soft edges less), but never below FAINTEST_ALPHA.
OPAQUE_FROM = 128
FAINTEST_ALPHA = 32


def label_codes(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A label layer (HxWx3/4 uint8, RGB(A)) -> (HxW int32 0xRRGGBB codes, HxW bool painted: alpha from OPAQUE_FROM,
    or half the strongest)."""
    h, w = pixels.shape[:2]
    if pixels.shape[2] == 4:
        alpha = pixels[..., 3]
        painted = alpha >= min(OPAQUE_FROM, max(FAINTEST_ALPHA, (int(alpha.max()) + 1) // 2))
    else:
        painted = np.ones((h, w), bool)
    rgb = pixels[..., :3]
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    return codes, painted


def flat_pixels(codes: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """HxW bool: painted pixels whose 8 neighbours are painted in the same colour."""
    h, w = codes.shape
    flat = painted.copy()
    flat[0, :] = flat[-1, :] = flat[:, 0] = flat[:, -1] = False  # a border pixel's neighbours are not all seen
    centre = codes[1:-1, 1:-1]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                flat[1:-1, 1:-1] &= (codes[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx] == centre) & \
                    painted[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx]
    return flat


def object_colours(codes: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """The codes painted flat somewhere (MIN_INTERIOR_PIXELS), the largest first. Counted through a table of every
    24-bit code (64 MB, only the pages touched are allocated), ROWS rows at a time: no sort of the canvas."""
    flat = flat_pixels(codes, painted)
    # every 3x3 block of flat pixels holds one of this grid: a colour with MIN_INTERIOR_PIXELS of them is among these
    candidates = np.unique(codes[::3, ::3][flat[::3, ::3]])
    if candidates.size == 0:
        return candidates
    index = np.zeros(1 << 24, np.int32)
    index[candidates] = np.arange(1, candidates.size + 1, dtype=np.int32)
    inner, every = np.zeros(candidates.size + 1, np.int64), np.zeros(candidates.size + 1, np.int64)
    for y in range(0, codes.shape[0], ROWS):
        rows = slice(y, y + ROWS)
        inner += np.bincount(index[codes[rows][flat[rows]]], minlength=candidates.size + 1)
        every += np.bincount(index[codes[rows][painted[rows]]], minlength=candidates.size + 1)
    keep = np.flatnonzero(inner[1:] >= MIN_INTERIOR_PIXELS)
    return candidates[keep[np.argsort(-every[1:][keep], kind="stable")]]


BLEND_TOLERANCE = 3  # /255: how near a colour and its alpha must come to two strokes' mix to be taken for it
MAX_BLEND_SEARCH = 320  # colours: past this many the ordered pairs (~100k) are not looked through for mixes


def colour_alphas(codes: np.ndarray, painted: np.ndarray, alpha: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Each colour's mean alpha (0..255) over the pixels painted in it, ROWS rows at a time."""
    index = np.zeros(1 << 24, np.int32)
    index[colours] = np.arange(1, colours.size + 1, dtype=np.int32)
    total, count = np.zeros(colours.size + 1), np.zeros(colours.size + 1)
    for y in range(0, codes.shape[0], ROWS):
        rows = slice(y, y + ROWS)
        at = index[codes[rows][painted[rows]]]
        total += np.bincount(at, weights=alpha[rows][painted[rows]], minlength=colours.size + 1)
        count += np.bincount(at, minlength=colours.size + 1)
    return total[1:] / np.maximum(count[1:], 1)


def translucent_overlaps(colours: np.ndarray, alphas: np.ndarray) -> dict[int, int]:
    """Colours that are where a translucent stroke of one label colour went over another's: their colour and alpha
    are Krita's "normal" mix of the two (alpha_t + alpha_b (1 - alpha_t), the colours weighted so), to within
    BLEND_TOLERANCE. -> {index of such a colour: index of the stroke on top}. Opaque strokes mix to the top one's
    own colour, so a layer painted at full opacity never has any."""
    rgb = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1).astype(np.float64)
    a = alphas / 255.0
    top, under = np.meshgrid(np.arange(colours.size), np.arange(colours.size), indexing="ij")
    pairs = top != under
    top, under = top[pairs], under[pairs]
    over = a[top] + a[under] * (1 - a[top])  # every ordered pair's mix: its alpha and colour
    mixed = (rgb[top] * a[top, None] + rgb[under] * (a[under] * (1 - a[top]))[:, None]) / \
        np.maximum(over, 1e-9)[:, None]
    found = {}
    for c in range(colours.size):
        mine = (top != c) & (under != c) & (np.abs(over * 255 - alphas[c]) <= BLEND_TOLERANCE) & \
            (np.abs(mixed - rgb[c]).max(axis=1) <= BLEND_TOLERANCE)
        if mine.any():
            found[c] = int(top[np.flatnonzero(mine)[0]])
    return found


def colour_labels(pixels: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A label layer painted in flat colours (HxWx3/4 uint8, RGB(A)) -> (HxW uint8 labels, "#rrggbb" of label k at
    k - 1). A colour painted flat somewhere (object_colours) is an object, the largest label 1; other painted pixels
    (a brush's anti-aliased edge, blends where two colours meet) join an object whose pixels touch them, growing a
    pixel at a time (one of the colours that meet there: the nearest colour could be a third one, between them);
    transparent ones none."""
    codes, painted = label_codes(pixels)
    main = object_colours(codes, painted)
    blends: dict[int, int] = {}
    if pixels.shape[2] == 4 and 3 <= main.size <= MAX_BLEND_SEARCH:  # where translucent strokes overlap
        blends = translucent_overlaps(main, colour_alphas(codes, painted, pixels[..., 3], main))
    objects = main[[i for i in range(main.size) if i not in blends]]
    if objects.size > 255:
        raise InputError(f"the label layer has {objects.size} colours covering an object's area; at most 255 "
                         "objects", "paint each object in one flat colour")
    labels = np.zeros(codes.shape, np.uint8)
    if objects.size == 0:
        return labels, []
    label_of = np.zeros(1 << 24, np.uint8)
    label_of[objects] = np.arange(1, objects.size + 1, dtype=np.uint8)
    for blend in blends:  # the stroke on top's object (on top of a blend itself: that one's)
        top, steps = blends[blend], 0
        while top in blends and steps < len(blends):
            top, steps = blends[top], steps + 1
        label_of[main[blend]] = label_of[main[top]]
    for y in range(0, codes.shape[0], ROWS):
        rows = slice(y, y + ROWS)
        labels[rows] = label_of[codes[rows]] * painted[rows]
    open_ = painted & (labels == 0)  # the blends, given out from the objects' pixels inwards
    kernel = np.ones((3, 3), np.uint8)
    while open_.any():
        grown = cv2.dilate(labels, kernel)
        reached = open_ & (grown > 0)
        if not reached.any():
            break
        labels[reached] = grown[reached]
        open_ &= ~reached
    return labels, [f"#{int(code):06x}" for code in objects]


def colour_order(order: list[int], colours: list[str], wanted: list[str]) -> list[int]:
    """The labels of `wanted` colours ("#rrggbb", front first, the artist's order) in front, then the others as
    `order` has them. `colours`: colour_labels' codes, label k's at k - 1; a wanted colour not there is an error."""
    code = {c.lower(): k for k, c in enumerate(colours, 1)}
    missing = [c for c in wanted if c.lower() not in code]
    if missing:
        raise InputError(f"the label layer has no object painted in {', '.join(missing)}; its colours are "
                         f"{', '.join(colours)}", "name the colours as the layers after a split show them")
    front = [code[c.lower()] for c in wanted]
    return [*front, *(k for k in order if k not in front)]


@dataclass
class Peeled:
    """The objects' layers, front first (HxWx4 straight alpha each: uint8 when the split stores 8-bit layers,
    else float32), their split infos, and the background behind them all (float32)."""

    layers: list[np.ndarray] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    background: np.ndarray | None = None

    def composite(self) -> np.ndarray:
        """The layers over the background, back to front: what the stack shows (`image`, within 1/255)."""
        assert self.background is not None
        return composite_stack(self.layers, self.background)

    def error(self, image: np.ndarray) -> float:
        """How far what the stack shows is from `image` (imaging.compose.composite_error: premultiplied, so the
        colours of a transparent source's transparent pixels do not count), as stored: an 8-bit stack's background
        at 8 bits too (the float one hid its last rounding: 0.000/255 said where the file is 0.49/255 off)."""
        assert self.background is not None
        eight_bit = bool(self.layers) and self.layers[0].dtype == np.uint8
        return composite_error(self.layers, to_u8(self.background) if eight_bit else self.background, image)


def object_progress(progress: ProgressFn, k: int, count: int, names: Sequence[str] | None) -> ProgressFn:
    """The k-th of `count` objects' stages on its share of the whole, named after it ("label 2: matting"): its own
    "done" is not the job's."""
    part = sub_progress(progress, k / count, (k + 1) / count)
    if count == 1:
        return part
    name = names[k] if names else f"object {k + 1}"
    return lambda stage, fraction: part(f"{name}: {stage}", fraction)


def split_objects(image: np.ndarray, masks: Sequence[np.ndarray], options: SplitOptions | None = None,
                  progress: ProgressFn = no_progress, method: LayerMethod | None = None,
                  matte: MatteFn | None = None) -> Peeled:
    """Each mask's object (HxW masks, the first the frontmost) split off what the ones before it left. Only the
    last background is kept: each earlier one is the next split's input, whose buffer becomes its background. With
    8-bit layers (quantize 255) a finished layer is kept as uint8, exactly: a quarter of its float32 memory. `matte`:
    each object's learned matting instead of the closed form (split_layer's)."""
    if not masks:
        raise InputError("no object to split: every label is 0")
    check_size(image)  # before any object: these are the picture's, not an object's
    check_shows(image)
    peeled = Peeled()
    eight_bit = options is not None and options.quantize == 255
    opaque = image.shape[2] == 3 or float(image[..., 3].min()) >= 1.0  # a layer's own alpha: F's alpha is a a_layer
    # (a transparent layer's F stores a rounded a a_layer too: its background makes up for both roundings)
    current = image
    covered: np.ndarray | None = None  # the front objects' area (their masks at 0.5): a byte a pixel
    for k, mask in enumerate(masks):
        part = object_progress(progress, k, len(masks), getattr(masks, "names", None))
        seen = mask >= 0.5
        guessed = None  # the completion under the front objects: our guess, not the user's word (never held)
        if covered is not None:
            behind = hidden_share(seen, covered)
            if behind is not None:
                mask = np.maximum(mask, behind)  # a new array: the caller's mask is not changed
                guessed = behind > 0
            del behind
        covered = seen if covered is None else np.logical_or(covered, seen, out=covered)
        del seen
        try:
            result = split_layer(current, mask=mask, options=options, progress=part, method=method,
                                 overwrite_input=k > 0, matte=matte, guessed=guessed)  # our buffer from the 2nd on
        except InputError as exc:
            names = getattr(masks, "names", None)
            raise InputError(f"{names[k] if names else f'object {k + 1}'}: {exc.text}", exc.detail) from None
        stored = to_u8(result.foreground) if eight_bit else result.foreground
        if eight_bit:
            (absorb_rounding if opaque else absorb_rounding_with_alpha)(result.background, result.foreground, stored)
        peeled.layers.append(stored)
        peeled.infos.append(result.info)
        current = result.background
        del result, stored, mask, guessed  # the float32 foreground and alpha go before the next split
    peeled.background = current
    if len(masks) > 1:
        progress("done", 1.0)
    return peeled


COMPLETION_MIN_DEPTH_PX = 2.0  # a visible part no deeper (strands only) gives no hint of the shape behind


def hidden_share(seen: np.ndarray, covered: np.ndarray) -> np.ndarray | None:
    """Where an object (`seen`: its mask at 0.5) runs on behind the objects in front of it (`covered`: their area):
    their pixels within the visible part's depth (its largest inside distance) of it and nearer to it than to
    anything else visible (the background or the objects behind). HxW float32 1/0, or None where there is none.
    Worked on the visible part's box grown by that depth: the cost follows the object, not the canvas."""
    seeds = seen & ~covered
    rows, cols = np.flatnonzero(seeds.any(axis=1)), np.flatnonzero(seeds.any(axis=0))
    if rows.size == 0:
        return None
    grow = completion_reach(int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))
    h, w = seen.shape
    box = (slice(max(0, rows[0] - grow), min(h, rows[-1] + grow + 1)),
           slice(max(0, cols[0] - grow), min(w, cols[-1] + grow + 1)))
    sub_seeds, sub_covered = seeds[box], covered[box]
    if not sub_covered.any():
        return None
    depth = float(cv2.distanceTransform(sub_seeds.view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5).max())
    if depth <= COMPLETION_MIN_DEPTH_PX:
        return None
    near_self = cv2.distanceTransform((~sub_seeds).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    part = sub_covered & (near_self <= depth)
    others = ~sub_covered & ~sub_seeds
    if others.any():
        part &= near_self < cv2.distanceTransform((~others).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    if not part.any():
        return None
    share = np.zeros((h, w), np.float32)
    share[box] = part
    return share


def completion_reach(height: int, width: int) -> int:
    """How far (px) hidden_share can reach past a visible part of this box: its depth, at most half the box's
    smaller side (job_memory grows each label's box by it)."""
    return min(height, width) // 2 + 1


def absorb_rounding(background: np.ndarray, foreground: np.ndarray, stored: np.ndarray) -> None:
    """The background (in place) that makes the *stored* 8-bit foreground recompose the split's input exactly:
    B* = B + a (F - F_stored) / (1 - a) where the background shows (a < 1), clipped to [0, 1]. The next object is
    split off B*, so one layer's rounding is made good by the layers behind it instead of adding up down the stack:
    the whole stack stays within the last split's half level, however many objects (where B* needs no clipping)."""
    h = background.shape[0]
    for y in range(0, h, ROWS):  # a band at a time: no full-size float temporaries on a large canvas
        rows = slice(y, y + ROWS)
        a = stored[rows, :, 3:4].astype(np.float32) / 255.0
        shows = a < 1.0
        gain = np.where(shows, a / np.where(shows, 1.0 - a, 1.0), 0.0)
        rounding = foreground[rows, :, :3] - stored[rows, :, :3].astype(np.float32) / 255.0
        band = background[rows, :, :3]
        np.clip(band + gain * rounding, 0.0, 1.0, out=band)


def absorb_rounding_with_alpha(background: np.ndarray, foreground: np.ndarray, stored: np.ndarray) -> None:
    """absorb_rounding for a transparent layer (HxWx4 straight alpha: F's alpha a a_layer, rounded when stored, so
    unlike the split's float one): premultiplied, the stored F' over B* shows what F over B showed,
    a* = (A - a') / (1 - a') and B* = (P - a' F') / ((1 - a') a*) where the stored alpha a' < 1 (A, P: the float
    pair's alpha and premultiplied colour); clipped to [0, 1]. Without it each layer's rounding added up down the
    stack (1.3/255 with ten nested objects over a layer at alpha 64/255)."""
    h = background.shape[0]
    for y in range(0, h, ROWS):  # a band at a time: no full-size float temporaries on a large canvas
        rows = slice(y, y + ROWS)
        a_f, a_b = foreground[rows, :, 3:4], background[rows, :, 3:4]
        shown = a_f + (1.0 - a_f) * a_b
        colour = a_f * foreground[rows, :, :3] + (1.0 - a_f) * a_b * background[rows, :, :3]
        a_s = stored[rows, :, 3:4].astype(np.float32) / 255.0
        shows = a_s < 1.0
        rest = np.where(shows, 1.0 - a_s, 1.0)
        alpha = np.clip((shown - a_s) / rest, 0.0, 1.0)
        colour -= a_s * stored[rows, :, :3].astype(np.float32) / 255.0
        colour /= rest * np.where(alpha > 0.0, alpha, 1.0)
        np.clip(colour, 0.0, 1.0, out=colour)
        band = background[rows]
        band[..., 3:4] = np.where(shows, alpha, a_b)
        band[..., :3] = np.where(shows & (alpha > 0.0), colour, band[..., :3])
