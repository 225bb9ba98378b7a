"""Image files <-> float32 arrays in [0,1]."""

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError

# Refuse decompression bombs with a clear message instead of PIL's warning/exception.
MAX_FILE_PIXELS = 16384 * 16384


def _open(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"cannot read '{path}': no such file")
    Image.MAX_IMAGE_PIXELS = MAX_FILE_PIXELS
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise InputError(f"cannot read '{path}' as an image", str(exc)) from None
    return img


def _to_float(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        return np.clip(arr / 65535.0, 0, 1)
    if img.mode == "F":
        return np.clip(np.asarray(img, dtype=np.float32), 0, 1)
    return np.asarray(img, dtype=np.float32) / 255.0


def load_image(path: str | Path) -> np.ndarray:
    """RGB or RGBA file -> HxWx3 / HxWx4 float32 (RGBA kept when the file has transparency)."""
    img = _open(path)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    return _to_float(img.convert("RGBA" if has_alpha else "RGB"))


def load_mask(path: str | Path) -> np.ndarray:
    """Grey or RGBA file -> HxW float32: the alpha channel if the file has one, else the grey level."""
    img = _open(path)
    if img.mode in ("RGBA", "LA", "PA"):
        return _to_float(img.getchannel("A"))
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _to_float(img)
    return _to_float(img.convert("L"))


def to_u8(array: np.ndarray) -> np.ndarray:
    return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_png(path: str | Path, array: np.ndarray) -> None:
    """HxW, HxWx3 or HxWx4 float32 -> 8-bit PNG (straight alpha)."""
    Image.fromarray(to_u8(array)).save(path, compress_level=3)
