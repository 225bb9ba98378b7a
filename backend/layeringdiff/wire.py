"""Protocol images <-> float32 arrays (the only place that knows byte layouts)."""

import numpy as np
from layering_protocol import Image

NP_DTYPES = {"u8": np.dtype("<u1"), "u16": np.dtype("<u2"), "f16": np.dtype("<f2"), "f32": np.dtype("<f4")}
SCALE = {"u8": 255.0, "u16": 65535.0, "f16": 1.0, "f32": 1.0}
QUANTIZE = {"u8": 255, "u16": 65535, "f16": None, "f32": None}
FLOATS = ("f16", "f32")
ROWS = 256  # rows converted at a time


Span = tuple[float, float]  # a float layer's colour values, lowest and highest, where they reach outside [0, 1]


def to_array(image: Image) -> np.ndarray:
    """Image -> HxWxC float32 in RGB(A) order, [0,1] (values outside are clipped; NaN kept for checks)."""
    out = _read(image)
    if image.dtype in FLOATS:
        np.clip(out, 0.0, 1.0, out=out)  # NaN stays NaN, so the stage's own check reports it
    return out


def to_unit_array(image: Image) -> tuple[np.ndarray, Span | None]:
    """A layer to split -> (HxWxC float32 RGB(A) in [0, 1], its colours' span). A float layer whose colours reach
    outside [0, 1] (above white in an HDR document, below 0 in a wide gamut) has them mapped from their span
    (lo, hi) onto [0, 1], the same map for every channel, instead of clipped: a map C' = (C - lo) / (hi - lo) keeps
    C = a F + (1 - a) B exact (a + (1 - a) = 1), so from_array(..., span) gives layers that recompose the layer as
    it was (clipped, a highlight at 3.15 came back at 1.0: up to 548/255 off). None: nothing was mapped."""
    out = _read(image)
    span = colour_span(out) if image.dtype in FLOATS else None
    if span is not None:
        lo, width = span[0], span[1] - span[0]
        for y in range(0, out.shape[0], ROWS):
            colours = out[y:y + ROWS, :, :3]
            colours -= lo
            colours /= width
    if image.dtype in FLOATS:
        np.clip(out, 0.0, 1.0, out=out)  # alpha, and the map's rounding
    return out, span


def unmap_colours(pixels: np.ndarray, span: Span) -> np.ndarray:
    """to_unit_array's map taken back, in place on HxWxC float32 (colours first in RGBA and BGRA alike)."""
    pixels[..., :3] *= span[1] - span[0]
    pixels[..., :3] += span[0]
    return pixels


def colour_span(out: np.ndarray) -> Span | None:
    """The lowest and highest colour values (alpha apart) of an HxWxC float array, 0 and 1 at least, where they
    reach outside [0, 1]; else None. NaN is passed over (the stage's own check reports it)."""
    lo, hi = 0.0, 1.0
    for y in range(0, out.shape[0], ROWS):
        colours = out[y:y + ROWS, :, :3]
        finite = colours[~np.isnan(colours)] if np.isnan(colours).any() else colours
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    return None if (lo, hi) == (0.0, 1.0) else (lo, hi)


def _read(image: Image) -> np.ndarray:
    """Image -> HxWxC float32 in RGB(A) order, not clipped (+-inf made NaN). Written channel by channel into one
    array: a 4096^2 RGBA layer costs its 268 MB, not three times that."""
    arr = np.frombuffer(image.data, dtype=NP_DTYPES[image.dtype]).reshape(
        image.height, image.width, image.channels
    )
    out = np.empty(arr.shape, np.float32)
    order = [2, 1, 0, 3][: image.channels] if image.order in ("BGRA", "BGR") else range(image.channels)
    for dst, src in enumerate(order):
        np.divide(arr[..., src], SCALE[image.dtype], out=out[..., dst], dtype=np.float32)
    if image.dtype in FLOATS:
        _infinite_as_nan(out)
    return out


def _infinite_as_nan(out: np.ndarray) -> None:
    """+-inf -> NaN in place, before clipping would make it 1 or 0: refused like NaN (PROTOCOL.md: bad_input)."""
    for y in range(0, out.shape[0], ROWS):
        band = out[y:y + ROWS]
        band[np.isinf(band)] = np.nan


def mask_channel(order: str) -> int:
    """Which channel of a mask image's frame is the mask: its only one, the alpha of RGBA/BGRA, the red of RGB/BGR."""
    return {"RGBA": 3, "BGRA": 3, "RGB": 0, "BGR": 2}.get(order, 0)


def to_mask(image: Image) -> np.ndarray:
    """Mask image -> HxW float32 (mask_channel's channel)."""
    arr = np.frombuffer(image.data, dtype=NP_DTYPES[image.dtype]).reshape(image.height, image.width, image.channels)
    out = arr[..., mask_channel(image.order)].astype(np.float32) / SCALE[image.dtype]
    if image.dtype in FLOATS:
        _infinite_as_nan(out)
        np.clip(out, 0.0, 1.0, out=out)  # NaN stays NaN, for the stage's own check
    return out


def from_array(array: np.ndarray, dtype: str, order: str, span: Span | None = None) -> Image:
    """HxW or HxWxC float32 RGB(A) [0,1] (or uint8 0-255) -> Image with the given dtype and channel order (a band of
    rows at a time: no full-size float temporaries). `span` (a float layer's, to_unit_array's): its colours mapped
    back from [0, 1] onto it."""
    if array.ndim == 2:
        array = array[..., None]
    channels = [2, 1, 0, 3][: array.shape[2]] if order in ("BGRA", "BGR") else slice(None)
    if array.dtype == np.uint8:  # a layer kept 8-bit (a peeled object's): its bytes as they are, or scaled
        if dtype == "u8":
            data = np.ascontiguousarray(array[..., channels])
            return Image(array.shape[1], array.shape[0], order, dtype, memoryview(data).cast("B"))
        array = array.astype(np.float32) / 255.0
    if dtype in FLOATS and span is not None and array.shape[2] >= 3:
        data = np.empty(array.shape, NP_DTYPES[dtype])
        for y in range(0, array.shape[0], ROWS):
            band = array[y:y + ROWS][..., channels].astype(np.float32)
            data[y:y + ROWS] = unmap_colours(band, span)
    elif dtype in FLOATS:
        data = np.ascontiguousarray(array[..., channels], dtype=NP_DTYPES[dtype])
    else:
        data = np.empty(array.shape, NP_DTYPES[dtype])
        for y in range(0, array.shape[0], ROWS):
            band = np.clip(array[y:y + ROWS][..., channels], 0.0, 1.0) * SCALE[dtype]
            band += 0.5
            data[y:y + ROWS] = band
    return Image(array.shape[1], array.shape[0], order, dtype, memoryview(data).cast("B"))
