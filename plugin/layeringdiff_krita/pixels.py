"""Krita pixel formats <-> protocol image descriptions. Pure Python: Krita's Python has no numpy."""

from typing import List, Tuple

from layering_protocol import Image


class UnsupportedFormat(ValueError):
    pass


# Krita's pixelData: integer RGBA layers come as BGRA, float ones as RGBA (channel order of the colour space).
DEPTHS = {"U8": ("u8", "BGRA"), "U16": ("u16", "BGRA"), "F16": ("f16", "RGBA"), "F32": ("f32", "RGBA")}


def layer_format(color_model: str, color_depth: str) -> Tuple[str, str]:
    """-> (protocol dtype, channel order) for a Krita layer, or UnsupportedFormat with a sentence."""
    if color_model != "RGBA":
        raise UnsupportedFormat(
            f"LayeringDiff works on RGB layers; this layer is {color_model}/{color_depth}. "
            "Convert it with Image > Convert Image Color Space (or Layer > Convert > Layer Color Space) to RGB."
        )
    if color_depth not in DEPTHS:
        raise UnsupportedFormat(f"unsupported channel depth {color_depth} (use 8, 16-bit integer or float)")
    return DEPTHS[color_depth]


def layer_image(data: bytes, width: int, height: int, color_model: str, color_depth: str) -> Image:
    dtype, order = layer_format(color_model, color_depth)
    return Image(width, height, order, dtype, data)


def selection_image(data: bytes, width: int, height: int) -> Image:
    """Krita's Selection.pixelData: one byte per pixel, 255 = selected."""
    return Image(width, height, "L", "u8", data)


def selection_is_empty(data: bytes) -> bool:
    return not any(data)  # C-speed scan; a fully deselected area is all zero bytes


def selection_is_full(data: bytes) -> bool:
    return data.count(255) == len(data)


_NONZERO = bytes([0] + [1] * 255)  # bytes.translate table: 1 where a byte is not zero


def _painted(image: Image) -> int:
    """An int whose byte i (little-endian) is 1 where pixel i's alpha is not zero (an int: C-speed ands)."""
    size = {"u8": 1, "u16": 2, "f16": 2, "f32": 4}[image.dtype]
    painted = 0
    for k in range(size):  # alpha is the fourth channel in BGRA and RGBA alike
        painted |= int.from_bytes(bytes(image.data[3 * size + k::4 * size]).translate(_NONZERO), "little")
    return painted


def selects_only_transparent(data: bytes, image: Image) -> bool:
    """Whether a selection (one byte a pixel over the layer) touches none of the layer's painted pixels."""
    return int.from_bytes(data.translate(_NONZERO), "little") & _painted(image) == 0


MAX_OBJECTS = 255  # labels are one byte
_HALF = 128  # a pixel at least half selected belongs to the mask's object


def labels_from_masks(masks: List[bytes]) -> bytes:
    """Selections of one size (one byte a pixel, 255 = selected), front first -> a label image, one byte a pixel:
    k where mask k (1 = the first) is the frontmost to select the pixel at least half, 0 where none does. Pure
    Python at C speed: each mask as one big integer, masked in with bitwise operations."""
    if not masks or len(masks) > MAX_OBJECTS:
        raise ValueError(f"1 to {MAX_OBJECTS} masks, got {len(masks)}")
    size = len(masks[0])
    selected = bytes(0 if v < _HALF else 255 for v in range(256))
    labels = 0
    for k in range(len(masks), 0, -1):  # the back one first: each one in front covers it
        mask = masks[k - 1]
        if len(mask) != size:
            raise ValueError("the masks differ in size")
        where = int.from_bytes(mask.translate(selected), "little")
        value = int.from_bytes(mask.translate(bytes(0 if v < _HALF else k for v in range(256))), "little")
        labels = (labels & ~where) | value
    return labels.to_bytes(size, "little")
