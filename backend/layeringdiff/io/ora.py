"""OpenRaster (.ora) files: a zip of PNG layers + stack.xml, opened by Krita, GIMP and MyPaint."""

import contextlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
from PIL import Image

from .images import to_u8

MIMETYPE = b"image/openraster"
THUMB_SIDE = 256


@dataclass
class OraLayer:
    name: str
    pixels: np.ndarray  # HxWx4 float32 straight alpha (or HxWx3, opaque)
    visible: bool = True
    x: int = 0
    y: int = 0


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(to_u8(array)).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def over(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Porter-Duff 'over' of straight-alpha RGBA float images."""
    ta, ba = top[..., 3:4], bottom[..., 3:4]
    out_a = ta + ba * (1.0 - ta)
    rgb = (top[..., :3] * ta + bottom[..., :3] * ba * (1.0 - ta)) / np.maximum(out_a, 1e-8)
    return np.concatenate([rgb, out_a], axis=-1)


def flatten(layers: list[OraLayer], width: int, height: int) -> np.ndarray:
    """Visible layers (top first) composited onto a transparent canvas."""
    canvas = np.zeros((height, width, 4), np.float32)
    for layer in reversed(layers):
        if not layer.visible:
            continue
        px = layer.pixels if layer.pixels.shape[2] == 4 else np.dstack(
            [layer.pixels, np.ones(layer.pixels.shape[:2], np.float32)])
        placed = np.zeros_like(canvas)
        h, w = px.shape[:2]
        placed[layer.y:layer.y + h, layer.x:layer.x + w] = px[: height - layer.y, : width - layer.x]
        canvas = over(placed, canvas)
    return canvas


@contextlib.contextmanager
def _removed_on_failure(path: Path) -> Iterator[None]:
    """A full disk or Ctrl+C while writing leaves no half-written file behind."""
    try:
        yield
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def write_ora(path: str | Path, layers: list[OraLayer], width: int, height: int) -> None:
    """Write layers (top first). The merged image and thumbnail are the visible stack."""
    image = ElementTree.Element("image", version="0.0.3", w=str(width), h=str(height))
    stack = ElementTree.SubElement(image, "stack")
    merged = flatten(layers, width, height)
    tmp = Path(str(path) + ".tmp")
    with _removed_on_failure(tmp), zipfile.ZipFile(tmp, "w") as zf:
        # the spec requires 'mimetype' first and stored uncompressed
        zf.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE, compress_type=zipfile.ZIP_STORED)
        for i, layer in enumerate(layers):
            src = f"data/layer{i:03d}.png"
            ElementTree.SubElement(
                stack, "layer", name=layer.name, src=src, x=str(layer.x), y=str(layer.y),
                opacity="1.0", visibility="visible" if layer.visible else "hidden",
                **{"composite-op": "svg:src-over"},
            )
            zf.writestr(src, _png_bytes(layer.pixels), compress_type=zipfile.ZIP_STORED)
        zf.writestr("stack.xml", ElementTree.tostring(image, encoding="utf-8", xml_declaration=True))
        zf.writestr("mergedimage.png", _png_bytes(merged), compress_type=zipfile.ZIP_STORED)
        thumb = Image.fromarray(to_u8(merged))
        thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
        buf = io.BytesIO()
        thumb.save(buf, format="PNG")
        zf.writestr("Thumbnails/thumbnail.png", buf.getvalue(), compress_type=zipfile.ZIP_STORED)
    tmp.replace(path)


def read_ora(path: str | Path) -> tuple[list[OraLayer], int, int]:
    """Layers (top first) as float32 RGBA, plus the canvas size."""
    with zipfile.ZipFile(path) as zf:
        if zf.read("mimetype") != MIMETYPE:
            raise ValueError(f"{path} is not an OpenRaster file")
        root = ElementTree.fromstring(zf.read("stack.xml"))
        layers = []
        for el in root.iter("layer"):
            with zf.open(el.attrib["src"]) as fh:
                px = np.asarray(Image.open(fh).convert("RGBA"), dtype=np.float32) / 255.0
            layers.append(OraLayer(el.attrib.get("name", ""), px, el.attrib.get("visibility") != "hidden",
                                   int(el.attrib.get("x", 0)), int(el.attrib.get("y", 0))))
        return layers, int(root.attrib["w"]), int(root.attrib["h"])
