"""OpenRaster (.ora) files: a zip of PNG layers + stack.xml, opened by Krita, GIMP and MyPaint."""

import contextlib
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from xml.etree import ElementTree

import cv2
import numpy as np
from PIL import Image

from .images import png_bytes

WRITERS = 2  # PNG encodes at once (each releases the GIL): the machines this targets have 2+ cores

MIMETYPE = b"image/openraster"
THUMB_SIDE = 256


@dataclass
class OraLayer:
    name: str
    pixels: np.ndarray  # HxWx4 float32 straight alpha (or HxWx3, opaque)
    visible: bool = True
    x: int = 0
    y: int = 0


@dataclass
class LayerGroup:
    """A group of layers (top first): a split's objects and background together, as the docker makes them."""

    name: str
    layers: list[OraLayer] = field(default_factory=list)
    visible: bool = True


def leaves(items: list["OraLayer | LayerGroup"]) -> list[OraLayer]:
    """The pixel layers top first, a hidden group's layers hidden."""
    out: list[OraLayer] = []
    for item in items:
        if isinstance(item, LayerGroup):
            out += [layer if item.visible else replace(layer, visible=False) for layer in item.layers]
        else:
            out.append(item)
    return out


def over(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Porter-Duff 'over' of straight-alpha RGBA float images."""
    ta, ba = top[..., 3:4], bottom[..., 3:4]
    out_a = ta + ba * (1.0 - ta)
    rgb = (top[..., :3] * ta + bottom[..., :3] * ba * (1.0 - ta)) / np.maximum(out_a, 1e-8)
    return np.concatenate([rgb, out_a], axis=-1)


def flatten(layers: list["OraLayer | LayerGroup"], width: int, height: int) -> np.ndarray:
    """Visible layers (top first) composited onto a transparent canvas. A group's normal-mode layers composite
    the same whether the group is isolated or not ('over' is associative)."""
    canvas = np.zeros((height, width, 4), np.float32)
    for layer in reversed(leaves(layers)):
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


def _thumbnail(merged: np.ndarray) -> np.ndarray:
    h, w = merged.shape[:2]
    scale = min(1.0, THUMB_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    step = max(1, int(1 / scale) // 2)  # a strided view first: the area filter then reads a quarter of the pixels
    return cv2.resize(np.ascontiguousarray(merged[::step, ::step]), size, interpolation=cv2.INTER_AREA)


def write_ora(path: str | Path, layers: list["OraLayer | LayerGroup"], width: int, height: int,
              merged: np.ndarray | None = None, encoded: dict[str, bytes] | None = None,
              icc: bytes | None = None) -> dict[str, bytes]:
    """Write layers and groups (top first; a group is a nested stack, which Krita and MyPaint open as a group
    layer); returns each layer's PNG bytes by name, for callers that also write them as files (nothing is encoded
    twice). `encoded`: PNGs the caller already has, by layer name (a source file stored as it is). The merged image
    and thumbnail are the visible stack: pass `merged` when it is known (a split's layers recomposite its source),
    else it is composited here. A `merged` that is one of the layers' own arrays is encoded once for both. `icc`:
    the colour profile every PNG it encodes is tagged with (the picture's: io/profiles.py)."""
    flat = leaves(layers)
    image = ElementTree.Element("image", version="0.0.3", w=str(width), h=str(height))
    if merged is None:
        merged = flatten(layers, width, height)
    same = next((i for i, layer in enumerate(flat) if layer.pixels is merged), None)
    given = encoded or {}

    def encode(i: int) -> bytes:
        array = flat[i].pixels if i < len(flat) else merged
        return given[flat[i].name] if i < len(flat) and flat[i].name in given else png_bytes(array, icc)

    with ThreadPoolExecutor(WRITERS) as pool:
        encoded_all = list(pool.map(encode, range(len(flat) + (same is None))))
        merged_png = encoded_all[same] if same is not None else encoded_all[-1]
        thumb = png_bytes(_thumbnail(merged), icc)
    tmp = Path(str(path) + ".tmp")
    with _removed_on_failure(tmp), zipfile.ZipFile(tmp, "w") as zf:
        # the spec requires 'mimetype' first and stored uncompressed
        zf.writestr(zipfile.ZipInfo("mimetype"), MIMETYPE, compress_type=zipfile.ZIP_STORED)
        index = 0

        def add(stack: ElementTree.Element, layer: OraLayer) -> None:
            nonlocal index
            src = f"data/layer{index:03d}.png"
            ElementTree.SubElement(
                stack, "layer", name=layer.name, src=src, x=str(layer.x), y=str(layer.y),
                opacity="1.0", visibility="visible" if layer.visible else "hidden",
                **{"composite-op": "svg:src-over"},
            )
            zf.writestr(src, encoded_all[index], compress_type=zipfile.ZIP_STORED)
            index += 1

        root = ElementTree.SubElement(image, "stack")
        for item in layers:
            if isinstance(item, LayerGroup):
                group = ElementTree.SubElement(root, "stack", name=item.name, opacity="1.0", isolation="isolate",
                                               visibility="visible" if item.visible else "hidden",
                                               **{"composite-op": "svg:src-over"})
                for layer in item.layers:
                    add(group, layer)
            else:
                add(root, item)
        zf.writestr("stack.xml", ElementTree.tostring(image, encoding="utf-8", xml_declaration=True))
        zf.writestr("mergedimage.png", merged_png, compress_type=zipfile.ZIP_STORED)
        zf.writestr("Thumbnails/thumbnail.png", thumb, compress_type=zipfile.ZIP_STORED)
    tmp.replace(path)
    return {layer.name: encoded_all[i] for i, layer in enumerate(flat)}


def read_ora(path: str | Path) -> tuple[list[OraLayer], int, int]:
    """Layers (top first, a group's in its place; a hidden group's hidden) as float32 RGBA, plus the canvas size."""
    with zipfile.ZipFile(path) as zf:
        if zf.read("mimetype") != MIMETYPE:
            raise ValueError(f"{path} is not an OpenRaster file")
        root = ElementTree.fromstring(zf.read("stack.xml"))
        layers = []
        for group, el in _layer_elements(root):
            with zf.open(el.attrib["src"]) as fh:
                px = np.asarray(Image.open(fh).convert("RGBA"), dtype=np.float32) / 255.0
            shown = el.attrib.get("visibility") != "hidden" and (group is None or group.attrib.get("visibility")
                                                                 != "hidden")
            layers.append(OraLayer(el.attrib.get("name", ""), px, shown,
                                   int(el.attrib.get("x", 0)), int(el.attrib.get("y", 0))))
        return layers, int(root.attrib["w"]), int(root.attrib["h"])


def ora_groups(path: str | Path) -> list[tuple[str, str]]:
    """(its group's name or "", the layer's name) for every layer, top first: the file's tree, for tests."""
    with zipfile.ZipFile(path) as zf:
        root = ElementTree.fromstring(zf.read("stack.xml"))
    return [("" if group is None else group.attrib.get("name", ""), el.attrib.get("name", ""))
            for group, el in _layer_elements(root)]


def _layer_elements(root: ElementTree.Element) -> list[tuple[ElementTree.Element | None, ElementTree.Element]]:
    """(the nested stack holding it or None, layer element), top first; the image's own stack is not a group."""
    out: list[tuple[ElementTree.Element | None, ElementTree.Element]] = []

    def walk(stack: ElementTree.Element, group: ElementTree.Element | None) -> None:
        for child in stack:
            if child.tag == "layer":
                out.append((group, child))
            elif child.tag == "stack":
                walk(child, child)

    for top in root.findall("stack"):
        walk(top, None)
    return out
