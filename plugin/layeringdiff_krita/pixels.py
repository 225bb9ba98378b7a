"""Krita pixel formats <-> protocol image descriptions. Pure Python: Krita's Python has no numpy."""

from typing import Tuple

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
