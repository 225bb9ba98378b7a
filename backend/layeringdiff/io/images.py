"""Image files <-> float32 arrays in [0,1]."""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from layering_protocol import DEFAULT_MAX_PIXELS
from PIL import Image, UnidentifiedImageError

from ..errors import InputError
from .profiles import cmyk_to_rgb, grey_curve, tag_png, through_curve

MAX_FILE_PIXELS = DEFAULT_MAX_PIXELS  # the default; the CLI's --max-pixels sets another per call
ROWS = 256  # rows worked on at a time
GREY16 = ("I;16", "I;16B", "I;16L", "I;16N", "I")


@dataclass(frozen=True)
class Header:
    """What a file's header says of its pixels, read before decoding any of them."""

    width: int
    height: int
    channels: int
    sample_bytes: int  # 1 (8-bit), 2 (16-bit), 4 (32-bit integer or float)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        """The pixels as the file stores them, decoded."""
        return self.pixels * self.channels * self.sample_bytes

    def load_bytes(self, out_channels: int) -> int:
        """Peak memory of decoding it into an HxWx`out_channels` float32 array: Pillow's image (3-band pixels
        take 4 bytes), its copy converted to RGB(A) or grey, and the float32 result with one temporary of its
        size."""
        stored = self.pixels * (4 if self.channels >= 3 else self.channels) * self.sample_bytes
        converted = max(stored, self.pixels * (4 if out_channels >= 3 else 1))
        return stored + converted + 2 * 4 * out_channels * self.pixels


def _open_lazily(path: Path, max_pixels: int) -> Image.Image:
    """The file opened, its header read and its size checked, nothing decoded: a small file can describe a huge
    image (a 281 KB PNG of 17000^2 pixels decodes to 10 GB), and Pillow's own guard only acts at twice its limit."""
    if not path.is_file():
        if path.is_dir():
            raise InputError(f"cannot read '{path}': it is a folder, not an image file")
        if path.exists():  # a device, a pipe, a socket
            raise InputError(f"cannot read '{path}': it is not a regular file", "give an image file")
        raise InputError(f"cannot read '{path}': no such file")
    Image.MAX_IMAGE_PIXELS = None  # Pillow's guard (a warning, an error only at twice it): ours replaces it
    try:
        img = Image.open(path)  # reads the header only
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"cannot read '{path}' as an image", str(exc)) from None
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise InputError(f"'{path}' is {w}x{h} = {w * h} pixels, more than the limit of {max_pixels}",
                         "scale it down, or raise the limit with --max-pixels")
    return img


def read_header(path: str | Path, max_pixels: int = MAX_FILE_PIXELS) -> Header:
    """The image's size, channels and sample size from its header (the pixel limit checked), without decoding."""
    img = _open_lazily(Path(path), max_pixels)
    with img:
        rawmode = _rawmode(img)
        deep = img.mode in GREY16 or ";16" in rawmode
        sample = 4 if img.mode in ("I", "F") else (2 if deep else 1)
        w, h = img.size
        if header_orientation(img) >= 5:  # stored turned: the upright size, in which a --box is given
            w, h = h, w
        return Header(w, h, len(img.getbands()), sample)


def _open(path: str | Path, max_pixels: int) -> tuple[Image.Image, str]:
    """Open and decode, after checking the size the header gives."""
    img = _open_lazily(Path(path), max_pixels)
    rawmode = _rawmode(img)  # decoding clears it
    try:
        img.load()
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read '{path}' as an image", str(exc)) from None
    return img, rawmode


EXIF_ORIENTATION = 0x0112


def orientation(img: Image.Image) -> int:
    """The file's EXIF orientation (1 upright; 2-8 stored mirrored and/or turned: a phone's JPEG), 1 where none."""
    try:
        value = img.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError):  # a broken EXIF block says nothing
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def upright(array: np.ndarray, turn: int) -> np.ndarray:
    """An HxW(xC) array as stored -> as a viewer shows it, for EXIF orientation `turn` (what Pillow's exif_transpose
    does, on the decoded array: a 16-bit file's full-precision pixels too)."""
    if turn in (2, 4, 5, 7):  # mirrored left to right (4, 5, 7: then turned)
        array = array[:, ::-1]
    quarter = {3: 2, 4: 2, 5: 1, 6: 3, 7: 3, 8: 1}.get(turn, 0)  # quarter turns anticlockwise, as np.rot90
    return np.ascontiguousarray(np.rot90(array, quarter) if quarter else array)


def header_orientation(img: Image.Image) -> int:
    """orientation() without decoding anything: Pillow decodes a whole PNG to look for an EXIF block after its
    pixels, so a PNG's is read only from a block before them (where it belongs), 1 otherwise."""
    if img.format == "PNG" and "exif" not in img.info:
        return 1
    return orientation(img)


def frame_count(path: str | Path) -> int:
    """How many frames or pages the file holds (an animated GIF or WebP, a multi-page TIFF): only the first is read.
    A PSD's frames are its layers, and what is read is their composite: one picture."""
    try:
        with Image.open(path) as img:
            return 1 if img.format == "PSD" else int(getattr(img, "n_frames", 1) or 1)
    except (OSError, UnidentifiedImageError, ValueError):
        return 1


def file_orientation(path: str | Path) -> int:
    """header_orientation() of a file, for a note; 1 where it cannot be read."""
    try:
        with Image.open(path) as img:
            return header_orientation(img)
    except (OSError, UnidentifiedImageError, ValueError):
        return 1


def _rawmode(img: Image.Image) -> str:
    """How the file stores its pixels ("RGB;16B" for a 16-bit PNG that Pillow hands out as 8-bit RGB)."""
    tile = getattr(img, "tile", None) or []
    args = tile[0].args if tile and hasattr(tile[0], "args") else (tile[0][3] if tile else "")
    return args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else "")


def _deep_colour(img: Image.Image, rawmode: str, path: str | Path) -> np.ndarray | None:
    """16-bit colour files at full precision (Pillow reads only their high bytes): HxWxC float32 RGB(A)."""
    if img.mode in GREY16 or ";16" not in rawmode:
        return None
    data = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16 or data.ndim != 3:
        return None
    rgb = data[..., [2, 1, 0, 3][: data.shape[2]]] if data.shape[2] in (3, 4) else data
    return rgb.astype(np.float32) / 65535.0


def _grey_top(rawmode: str) -> float:
    """The white of a grey integer file: 32-bit TIFFs (Pillow's mode I for them too) over their whole range, as
    GIMP and ImageMagick read them (before: divided by 65535, so all but the darkest 1/65536 came out white)."""
    if rawmode.startswith("I;32"):
        return 2147483647.0 if rawmode.endswith("S") else 4294967295.0  # signed: its negative half clipped to 0
    return 65535.0


def _to_float(img: Image.Image, rawmode: str = "") -> np.ndarray:
    if img.mode in GREY16:
        arr = np.asarray(img)
        if rawmode.startswith("I;32") and not rawmode.endswith("S") and arr.dtype == np.int32:
            arr = arr.view(np.uint32)  # Pillow hands an unsigned file out as signed: the top half came negative
        arr = arr.astype(np.float64 if rawmode.startswith("I;32") else np.float32)
        return np.clip(arr / _grey_top(rawmode), 0, 1).astype(np.float32)
    if img.mode == "F":
        return np.clip(np.asarray(img, dtype=np.float32), 0, 1)
    return np.asarray(img, dtype=np.float32) / 255.0


def load_image(path: str | Path, max_pixels: int = MAX_FILE_PIXELS) -> np.ndarray:
    """RGB or RGBA file -> HxWx3 / HxWx4 float32 (RGBA kept when the file has transparency), upright as viewers and
    paint programs show it (its EXIF orientation applied). 16-bit files (grey or colour) keep their precision."""
    return load_upright(path, max_pixels)[0]


def load_upright(path: str | Path, max_pixels: int = MAX_FILE_PIXELS) -> tuple[np.ndarray, int]:
    """load_image's pixels, and the EXIF orientation they were turned from (1: stored upright)."""
    img, rawmode = _open(path, max_pixels)
    turn = orientation(img)  # decoded already: nothing read twice
    if turn == 1 and img.format == "TIFF":  # Pillow turns a TIFF upright as it decodes it, and drops the tag
        return _decoded_image(img, rawmode, path), file_orientation(path)
    return upright(_decoded_image(img, rawmode, path), turn), turn


def _decoded_image(img: Image.Image, rawmode: str, path: str | Path) -> np.ndarray:
    curve = grey_curve(img) if img.mode in GREY16 + ("L", "LA") else None
    if curve is not None:  # a grey picture with its own profile: into sRGB through it, as viewers show it
        grey = _to_float(img, rawmode)
        if grey.ndim == 2:
            return through_curve(grey, curve)
        return np.concatenate([through_curve(grey[..., 0], curve), grey[..., 1:2]], axis=2)
    if img.mode in GREY16 or img.mode == "F":  # converting these to RGB would clip 16-bit to white, floats to black
        return np.repeat(_to_float(img, rawmode)[..., None], 3, axis=2)
    deep = _deep_colour(img, rawmode, path)
    if deep is not None and deep.shape[2] in (3, 4):
        return deep
    if img.mode == "CMYK":  # through its profile where it has one (Pillow's formula was up to 48/255 off)
        return _to_float(cmyk_to_rgb(img)[0])
    # a palette's transparent entries, and an 8-bit RGB or grey PNG's transparent colour (tRNS), as viewers show them
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode in ("P", "RGB", "L") and "transparency" in img.info)
    pixels = _to_float(img.convert("RGBA" if has_alpha else "RGB"))
    if img.format == "PSD" and has_alpha:
        _off_white(pixels)
    return pixels


def _off_white(pixels: np.ndarray) -> None:
    """A PSD's composite (what Pillow reads of it) in place as the picture: Photoshop stores a transparent one's
    colours composited over white, as psd-tools and viewers take off again (kept, a half-clear pixel read far too
    light: up to 58/255). Fully clear pixels get black."""
    for y in range(0, pixels.shape[0], ROWS):
        band = pixels[y:y + ROWS]
        a = band[..., 3:4]
        colours = band[..., :3]
        colours -= 1.0 - a
        np.divide(colours, a, out=colours, where=a > 0)
        colours[np.broadcast_to(a == 0, colours.shape)] = 0.0
        np.clip(colours, 0.0, 1.0, out=colours)


def load_mask(path: str | Path, max_pixels: int = MAX_FILE_PIXELS) -> np.ndarray:
    """A selection file -> HxW float32 in [0,1]: its alpha channel where that varies (a selection saved with
    transparency), else its brightest channel: the grey level of a grey mask, and where a mask painted in any
    colour on black is painted (a red mask's luminance would be 0.3: a selection made nearly empty without a word).
    An editor's opaque alpha says nothing and is passed over. A mask stored as 0 and 1 (numpy's and OpenCV's
    exports of a boolean array) is read as unselected and selected, not as 1/255."""
    img, rawmode = _open(path, max_pixels)
    deep = _deep_colour(img, rawmode, path)
    mask = None
    if img.mode in ("RGBA", "LA", "PA"):
        alpha = deep[..., 3] if deep is not None and deep.shape[2] == 4 else _to_float(img.getchannel("A"))
        if alpha.min() < alpha.max():
            mask = alpha
        del alpha
    if mask is None:
        if img.mode in GREY16 or img.mode == "F":
            mask = _to_float(img, rawmode)
        elif deep is not None and deep.shape[2] >= 3:  # 16-bit colour at full precision
            mask = np.ascontiguousarray(deep[..., :3].max(axis=2))
        elif img.mode in ("L", "LA"):
            mask = _to_float(img.getchannel("L"))
        else:  # colour: the brightest channel, taken on the 8-bit values (no full-size float RGB)
            mask = np.asarray(img.convert("RGB")).max(axis=2).astype(np.float32) / np.float32(255)
    return upright(_binary_as_selection(mask), orientation(img))


def _binary_as_selection(mask: np.ndarray) -> np.ndarray:
    """A mask whose only values are 0 and one level of at most 1/255 (a 0/1 array saved as is) -> 0 and 1."""
    top = float(mask.max())
    if 0.0 < top <= 1.0 / 255 + 1e-7 and not np.any((mask > 0) & (mask < top)):
        return (mask > 0).astype(np.float32)
    return mask


LOSSY_FORMATS = ("JPEG", "MPO", "JPEG2000", "AVIF", "HEIF")  # Pillow's names (WebP: refused apart)
LOSSY_TIFF = ("jpeg", "tiff_jpeg", "webp")  # a TIFF's compressions that change values (Pillow's names)


def load_labels(path: str | Path, max_pixels: int = MAX_FILE_PIXELS, hidden: list[int] | None = None) -> np.ndarray:
    """An 8-bit grey or paletted file -> HxW uint8 labels: 0 no object, k the k-th object (1 the frontmost). The
    values are read as they are stored (a palette's indices, not its colours). Also taken, as other tools save the
    same values: 1-bit (0/1), 2- and 4-bit grey (Pillow scales those to 0-255: scaled back), 16-bit grey up to 255
    (an instance map), and grey or R=G=B colour. Where a file has transparency it must be only opaque or clear, and
    a clear pixel is no object, whatever value or colour it keeps (a label layer exported with its unpainted pixels;
    a PNG's transparent colour or palette entry). Anything else is refused: its values would not be labels.
    `hidden` (when given) gets the object values found only on clear pixels: whole objects left out that way."""
    img, rawmode = _open(path, max_pixels)
    lossy = img.format if img.format in LOSSY_FORMATS else None
    if img.format == "TIFF" and img.info.get("compression") in LOSSY_TIFF:
        lossy = f"TIFF, {img.info['compression']}"  # "is TIFF, jpeg-compressed"
    if lossy:
        raise InputError(f"'{path}' is {lossy}-compressed: the compression changes the values along every "
                         "edge, and each changed value would become an object of its own", "save the labels as PNG")
    if img.format == "WEBP":  # Pillow opens every WebP as colour, and a lossy one's values are not the painted ones
        raise InputError(f"'{path}' is a WebP file: its values cannot be taken as labels (it may be lossy-compressed)",
                         "save the labels as an 8-bit grey or paletted PNG")
    return upright(_label_values(img, rawmode, path, hidden), orientation(img))


LOW_BIT_GREY = {"L;2": 85, "L;4": 17}  # Pillow's scale of 2- and 4-bit grey samples up to 8 bits


def _label_values(img: Image.Image, rawmode: str, path: str | Path, hidden: list[int] | None = None) -> np.ndarray:
    """The file's stored values as HxW uint8 labels; refused where they cannot be labels."""
    if ";16" in rawmode and img.mode in ("LA", "RGB", "RGBA"):  # Pillow hands these out as their high bytes
        raise _not_labels(path, img, " at 16 bits a channel")
    if img.mode == "P":  # the indices; an index the palette makes clear is no object
        values = np.array(img, dtype=np.uint8)
        given = img.info.get("transparency")
        if given is None:
            return values
        alphas = np.full(256, 255, np.uint8)
        if isinstance(given, int):
            alphas[given] = 0
        else:
            alphas[:len(given)] = np.frombuffer(bytes(given), np.uint8)[:256]
        return _clear_at(values, _clear_pixels(alphas[values], path, img), hidden)
    if img.mode in ("1", "L"):
        values = np.array(img, dtype=np.uint8)  # "1": 0/1, one object
        if rawmode in LOW_BIT_GREY:
            values //= LOW_BIT_GREY[rawmode]
        if "transparency" not in img.info:
            return values
        # a PNG's transparent grey, as stored (2-bit: 0-3; 1-bit: Pillow says 255 for a stored 1)
        clear = img.info["transparency"]
        clear = int(bool(clear)) if img.mode == "1" else clear
        return _clear_at(values, values == clear, hidden)
    if img.mode in GREY16:
        stored = np.asarray(img)
        given = img.info.get("transparency")
        clear = stored == given if isinstance(given, int) else None  # a 16-bit PNG's transparent grey: no object
        # its value past 255 is no label: left out of the range (and of the objects _clear_at names)
        wide = stored if clear is None or given <= 255 else np.where(clear, 0, stored)
        if wide.size and 0 <= int(wide.min()) and int(wide.max()) <= 255:
            values = wide.astype(np.uint8)
            return values if clear is None else _clear_at(values, clear, hidden)
        low, high = (int(wide.min()), int(wide.max())) if wide.size else (0, 0)
        scaled = wide.size and not np.any(wide % 257) and high <= 255 * 257
        raise _not_labels(path, img, f" with values from {low} to {high} (labels are 0 to 255)",
                          "; every value is a multiple of 257: 8-bit labels saved at 16 bits (an editor's 16-bit "
                          "mode scales k to 257 k), so save them as 8-bit" if scaled else "")
    if img.mode in ("LA", "RGB", "RGBA"):
        pixels = np.asarray(img, dtype=np.uint8)
        if img.mode == "RGB":
            clear = np.all(pixels == np.asarray(img.info["transparency"], np.uint8), axis=2) \
                if isinstance(img.info.get("transparency"), tuple) else np.zeros(pixels.shape[:2], bool)
        else:
            clear = _clear_pixels(pixels[..., -1], path, img)
        grey = pixels[..., 0]
        if img.mode != "LA" and not np.all(((grey == pixels[..., 1]) & (grey == pixels[..., 2])) | clear):
            raise _not_labels(path, img, tail="; a picture with one flat colour per object is what the Krita docker's "
                                              "label layer takes")
        return _clear_at(grey.copy(), clear, hidden)
    raise _not_labels(path, img)


def _not_labels(path: str | Path, img: Image.Image, detail: str = "", tail: str = "") -> InputError:
    """`detail`: what is wrong beyond the file's kind; `tail`: what to do instead."""
    kind = MODE_NAMES.get(img.mode, f"{img.mode} (Pillow's name)")
    return InputError(f"'{path}' is a {kind} image{detail}: labels are an 8-bit grey or paletted PNG (0: no object, "
                      f"1: the frontmost object, 2: the next, ...){tail}")


def _clear_pixels(alpha: np.ndarray, path: str | Path, img: Image.Image) -> np.ndarray:
    """Where a pixel's alpha (or its palette entry's) is 0; half-transparent ones have no value of their own."""
    if not np.all((alpha == 0) | (alpha == 255)):
        raise _not_labels(path, img, " with half-transparent pixels (a soft brush's edge: no value of their own)")
    return alpha == 0


def _clear_at(values: np.ndarray, clear: np.ndarray, hidden: list[int] | None = None) -> np.ndarray:
    """Labels with their transparent pixels at 0 (no object), in place; `hidden` gets the object values that were
    only on those (a PNG whose transparent grey or palette entry is an object's value drops that whole object)."""
    if hidden is not None and clear.any():
        every = cv2.calcHist([values], [0], None, [256], [0, 256]).ravel()
        on_clear = cv2.calcHist([values], [0], clear.view(np.uint8), [256], [0, 256]).ravel()
        hidden.extend(int(v) for v in np.flatnonzero((every > 0) & (on_clear == every)) if v)
    values[clear] = 0
    return values


MODE_NAMES = {**dict.fromkeys(GREY16, "16-bit grey"), "1": "1-bit black-and-white", "LA": "grey-with-transparency",
              "PA": "paletted-with-transparency", "RGB": "colour (RGB)", "RGBA": "colour-with-transparency (RGBA)",
              "CMYK": "CMYK", "I": "32-bit integer grey", "F": "32-bit float grey", "P": "paletted",
              "L": "8-bit grey"}


# zlib level 1: on a 4096^2 RGBA layer about 2x faster than level 6 for files about 5% larger (benchmarks/bench_big.py)
PNG_LEVEL = 1
U8_ROWS = 256  # rows converted at a time: no full-size float temporaries


def to_u8(array: np.ndarray) -> np.ndarray:
    """[0,1] floats -> uint8 (rounded), a band of rows at a time so a 4096^2 layer needs no extra float copy."""
    out = np.empty(array.shape, np.uint8)
    for y in range(0, array.shape[0], U8_ROWS):
        band = np.clip(array[y:y + U8_ROWS], 0.0, 1.0) * 255.0
        np.add(band, 0.5, out=band)
        out[y:y + U8_ROWS] = band
    return out


def stored_u8(array: np.ndarray) -> np.ndarray:
    """[0,1] floats (or uint8) -> the uint8 a layered file stores: a copy, rounded, with fully transparent pixels
    black (they show nothing: written black they encode 2x faster into a 3-4x smaller file)."""
    u8 = array.copy() if array.dtype == np.uint8 else to_u8(array)
    if u8.ndim == 3 and u8.shape[2] == 4:
        u8[u8[..., 3] == 0, :3] = 0
    return u8


def png_bytes(array: np.ndarray, icc: bytes | None = None) -> bytes:
    """HxW, HxWx3 or HxWx4 float32 in [0,1] (or uint8) -> 8-bit PNG bytes (straight alpha; the colour of fully
    transparent pixels is not kept), tagged with the colour profile `icc` when given. OpenCV's encoder at PNG_LEVEL
    releases the GIL, so layers encode in parallel threads."""
    u8 = stored_u8(array)
    if u8.ndim == 3 and u8.shape[2] in (3, 4):
        u8 = cv2.cvtColor(u8, cv2.COLOR_RGB2BGR if u8.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, data = cv2.imencode(".png", u8, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
    if not ok:
        raise OSError(f"PNG encoding failed for an array of shape {array.shape}")
    return tag_png(data.tobytes(), icc if u8.ndim == 3 else None)  # an RGB profile does not fit a grey PNG


def png_file_bytes(path: str | Path, turn: int = 1) -> bytes | None:
    """The file's bytes when it is an 8-bit RGB or RGBA PNG stored upright (`turn`: its orientation, as load_upright
    found it), which a layered file can store as it is (the source layer needs no encoding); None otherwise."""
    if turn != 1:
        return None  # stored turned: the layers are upright
    try:
        with Image.open(path) as img:
            if img.format != "PNG" or img.mode not in ("RGB", "RGBA") or ";16" in _rawmode(img):
                return None  # a 16-bit one too (Pillow calls it RGB): the layered file's layers are 8-bit, rounded
    except (OSError, UnidentifiedImageError):
        return None
    return Path(path).read_bytes()


def save_png(path: str | Path, array: np.ndarray) -> None:
    """HxW, HxWx3 or HxWx4 float32 -> 8-bit PNG (straight alpha)."""
    Path(path).write_bytes(png_bytes(array))
