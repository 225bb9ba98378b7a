"""Layered Photoshop files (.psd): the same stack as the .ora, for the applications that composite an .ora's soft
edges in linear light (GIMP 2.10 and 3 by default, MyPaint 2) or cannot open .ora at all (GIMP 2.10 on Debian 12).
Readers of PSD composite its layers as Photoshop does, in the file's own (perceptual) space, which is the space the
layers were split in.

8-bit RGBA layers with their names (each cropped to where it shows), the original hidden, a split's objects and
background in a group, and the merged image as the file's composite (what viewers and thumbnails show; a
transparent one over white, as Photoshop stores it). Written
with psd-tools (MIT, maintained, and it reads what it writes; layer creation since 1.25) rather than a hand-made
format; the document is RGBA, so a layer's alpha is its transparency channel, not a layer mask.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError
from .images import stored_u8
from .ora import LayerGroup, OraLayer

# A PSD holds at most this many pixels a side; psd-tools writes a larger canvas as a PSB (Photoshop's large format),
# which GIMP and psd-tools' own reader refuse, whatever the file is named.
PSD_MAX_SIDE = 30_000
ROWS = 256


def check_psd_size(width: int, height: int) -> None:
    """Refuse a canvas a .psd cannot hold (PSD_MAX_SIDE)."""
    if max(width, height) > PSD_MAX_SIDE:
        raise InputError(f"a {width}x{height} picture does not fit a .psd file (at most {PSD_MAX_SIDE} pixels a "
                         "side; larger is Photoshop's .psb, which GIMP cannot open)",
                         "write an .ora instead (-o NAME.ora), which Krita opens as it is")


def _rgba(pixels: np.ndarray) -> np.ndarray:
    """HxWx3/4 float32 (or uint8) -> HxWx4 uint8 as the .ora stores it (an opaque alpha added to RGB)."""
    u8 = stored_u8(pixels)
    return u8 if u8.shape[2] == 4 else np.dstack([u8, np.full(u8.shape[:2], 255, np.uint8)])


def _over_white(u8: np.ndarray) -> np.ndarray:
    """A transparent picture's merged image as Photoshop stores it: its colours composited over white, which
    readers take off again (psd-tools, viewers); stored as they are, a half-clear pixel read back far too dark."""
    if u8[..., 3].min() == 255:
        return u8
    out = u8.copy()
    for y in range(0, u8.shape[0], ROWS):  # in 16-bit integers a band at a time: an 8000^2 canvas needs no float copy
        a = u8[y:y + ROWS, :, 3:4].astype(np.uint16)
        mixed = u8[y:y + ROWS, :, :3] * a + 255 * (255 - a) + 127  # at most 65152
        out[y:y + ROWS, :, :3] = mixed // 255
    return out


def _shown(u8: np.ndarray) -> tuple[slice, slice]:
    """The box of the pixels that show (alpha > 0), the whole layer when none do."""
    rows, cols = np.flatnonzero(u8[..., 3].any(axis=1)), np.flatnonzero(u8[..., 3].any(axis=0))
    if rows.size == 0:
        return slice(0, u8.shape[0]), slice(0, u8.shape[1])
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _name(created: object, name: str) -> None:
    """The name as Photoshop writes it: the Pascal one (Mac Roman, 255 bytes; psd-tools' setter writes "?" for a name
    outside Mac Roman) and the Unicode one, which readers take where there is one (Krita 6.0 reads the Pascal name
    with its zero-byte padding). PSD names hold 255 characters."""
    created.name = name[:255]  # type: ignore[attr-defined]


def _add(parent: object, layer: OraLayer) -> None:
    u8 = _rgba(layer.pixels)
    box = _shown(u8)
    # created under a placeholder: psd-tools writes the name it is given as it is, which a name outside Mac Roman
    # or over 255 characters breaks
    created = parent.create_pixel_layer(Image.fromarray(np.ascontiguousarray(u8[box]), "RGBA"),  # type: ignore[attr-defined]
                                        name="layer", top=layer.y + box[0].start, left=layer.x + box[1].start)
    _name(created, layer.name)
    created.visible = layer.visible


def write_psd(path: str | Path, layers: list[OraLayer | LayerGroup], width: int, height: int,
              merged: np.ndarray, icc: bytes | None = None) -> None:
    """Layers and groups top first, as for write_ora; `merged` (HxWx3/4 in [0,1]) is stored as the composite.
    `icc`: the file's colour profile (the picture's: io/profiles.py), as Photoshop stores one."""
    from psd_tools import PSDImage
    from psd_tools.constants import Resource
    from psd_tools.psd.image_resources import ImageResource

    check_psd_size(width, height)
    # an RGBA document: layers keep transparency
    doc = PSDImage.frompil(Image.fromarray(_over_white(_rgba(merged)), "RGBA"))
    if doc.size != (width, height):
        raise ValueError(f"the merged image is {doc.size[0]}x{doc.size[1]}, the canvas {width}x{height}")
    if icc:
        doc.image_resources[Resource.ICC_PROFILE] = ImageResource(key=Resource.ICC_PROFILE, data=icc)
    for item in reversed(layers):  # psd-tools adds each on top
        if isinstance(item, LayerGroup):
            group = doc.create_group(name="group")  # a placeholder, as for a layer
            _name(group, item.name)
            group.visible = item.visible
            for layer in reversed(item.layers):
                _add(group, layer)
        else:
            _add(doc, item)
    if hasattr(doc, "_record"):
        # the merged image's fourth channel is its transparency (what a viewer shows of a transparent picture),
        # which a PSD says by a negative layer count; psd-tools writes it positive for a document made from RGBA
        info = doc._record.layer_and_mask_information.layer_info
        info.layer_count = -abs(info.layer_count)
        # psd-tools' save() recomposites every layer in float64 to refresh the composite once a layer was added
        # (an 8000^2 file: 5.7 GB more than the .ora, and a minute); `merged` is already the exact composite, and
        # the record writes the layers' pixels as added
        with open(path, "wb") as file:
            doc._record.write(file)
    else:  # a psd-tools whose record is not there any more: its own save, slower
        doc.save(str(path))


def read_psd(path: str | Path) -> tuple[list[tuple[str, OraLayer]], int, int]:
    """(the group's name or "", layer) for every pixel layer top first, as float32 RGBA placed at its offset;
    the canvas size. For tests and tools."""
    from psd_tools import PSDImage

    doc = PSDImage.open(str(path))
    out: list[tuple[str, OraLayer]] = []
    for layer in reversed(list(doc.descendants())):
        if layer.kind != "pixel":
            continue
        pixels = np.asarray(layer.topil().convert("RGBA"), np.float32) / 255.0
        group = layer.parent.name if layer.parent is not doc else ""
        visible = layer.visible and (layer.parent is doc or layer.parent.visible)
        out.append((group, OraLayer(layer.name, pixels, visible, layer.left, layer.top)))
    return out, doc.width, doc.height
