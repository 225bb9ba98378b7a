"""Colour profiles: a picture's embedded ICC profile carried onto every layer written from it, and CMYK and grey files
turned into RGB (sRGB) through theirs.

The split works on the file's own values (the composition C = a F + (1 - a) B holds in them), so its layers are in
the picture's colour space: written untagged, an Adobe RGB or Display P3 picture's layers were read as sRGB by Krita,
GIMP and viewers, beside an original that kept its profile (up to 107/255 apart in Krita). Each PNG of an .ora (the
layers, the merged image, the thumbnail) gets an iCCP chunk and a .psd its ICC profile resource. Krita and GIMP
open such a .psd in its space, exactly; Krita opens an .ora in sRGB, each layer converted on its own, so a soft edge
whose colours lie outside sRGB moves (an Adobe RGB picture: a third of its soft pixels by more than 2/255).
"""

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageCms

ICC_COLOUR_SPACE = slice(16, 20)  # the ICC header's data colour space signature


def colour_space(icc: bytes | None) -> str:
    """The profile's data colour space ("RGB", "CMYK", "GRAY", ...), "" where there is no readable profile."""
    if not icc or len(icc) < 128:
        return ""
    return icc[ICC_COLOUR_SPACE].decode("ascii", "replace").strip()


def description(icc: bytes | None) -> str:
    """The profile's own name ("Adobe RGB (1998)"), "" where there is none or it cannot be read."""
    if not icc:
        return ""
    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
    except (ImageCms.PyCMSError, OSError, ValueError):
        return ""


def rgb_profile(img: Image.Image) -> bytes | None:
    """The image's embedded profile when its pixels are read as RGB in it: an RGB profile on an RGB(A), paletted or
    16-bit colour file. A grey or CMYK file's profile does not describe the RGB values the split works on."""
    icc = img.info.get("icc_profile")
    if colour_space(icc) != "RGB" or img.mode in ("L", "LA", "I", "F", "1", "CMYK") or img.mode.startswith("I;16"):
        return None
    return icc


def cmyk_to_rgb(img: Image.Image) -> tuple[Image.Image, bool]:
    """A CMYK image as sRGB: through its own CMYK profile where it has one (relative colorimetric with black point
    compensation, as GIMP and Photoshop convert by default), else Pillow's plain formula. Returns (RGB image,
    whether the profile was used)."""
    icc = img.info.get("icc_profile")
    if colour_space(icc) == "CMYK":
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            transform = ImageCms.buildTransform(source, srgb, "CMYK", "RGB",
                                                renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                                flags=ImageCms.Flags.BLACKPOINTCOMPENSATION)
            return ImageCms.applyTransform(img, transform), True
        except (ImageCms.PyCMSError, OSError, ValueError):  # a broken profile: as if there were none
            pass
    return img.convert("RGB"), False


def grey_curve(img: Image.Image) -> np.ndarray | None:
    """A grey file's values through its own grey profile into sRGB, as a 256x3 float32 curve in [0, 1] (a grey maps
    to a grey, so a curve says it all; a 16-bit file's values are interpolated along it): None without a readable
    grey profile. Read as sRGB instead, a linear (gamma 1.0) grey picture's tones were 60/255 off on average."""
    icc = img.info.get("icc_profile")
    if colour_space(icc) != "GRAY":
        return None
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        ramp = Image.frombytes("L", (256, 1), bytes(range(256)))
        out = ImageCms.profileToProfile(ramp, source, srgb, renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                        outputMode="RGB", flags=ImageCms.Flags.BLACKPOINTCOMPENSATION)
    except (ImageCms.PyCMSError, OSError, ValueError):  # a broken profile: as if there were none
        return None
    return np.asarray(out, np.float32).reshape(256, 3) / 255.0


def through_curve(grey: np.ndarray, curve: np.ndarray) -> np.ndarray:
    """HxW grey values in [0, 1] -> HxWx3 float32 through grey_curve's curve."""
    steps = np.linspace(0.0, 1.0, curve.shape[0], dtype=np.float32)
    return np.stack([np.interp(grey, steps, curve[:, c]).astype(np.float32) for c in range(3)], axis=2)


def tag_png(png: bytes, icc: bytes | None) -> bytes:
    """PNG bytes with `icc` as their iCCP chunk, right after IHDR (where the PNG spec puts it); unchanged without
    one. The encoder's own output has no colour chunk (no sRGB or gAMA) that it would contradict."""
    if not icc or png[12:16] != b"IHDR":
        return png
    body = b"ICC profile\x00\x00" + zlib.compress(icc)  # name, its NUL, compression method 0 (deflate)
    chunk = struct.pack(">I", len(body)) + b"iCCP" + body + struct.pack(">I", zlib.crc32(b"iCCP" + body))
    end = 8 + 12 + 13  # the signature, then IHDR: length, type, 13 bytes of data, CRC
    return png[:end] + chunk + png[end:]
