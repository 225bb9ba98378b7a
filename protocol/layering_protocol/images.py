"""Raw image frames: a small header describes the bytes that travel in their own ZeroMQ frame."""

from dataclasses import dataclass
from typing import Any, Dict

from .errors import ErrorCode, ProtocolError
from .limits import short

DTYPE_SIZES = {"u8": 1, "u16": 2, "f16": 2, "f32": 4}  # f16: Krita's half-float documents
# Channel orders; "BGRA" is what Krita's pixelData gives for 8-bit RGBA layers, "L" is one channel.
ORDERS = {"RGBA": 4, "BGRA": 4, "RGB": 3, "BGR": 3, "L": 1}
DEFAULT_MAX_PIXELS = 16384 * 16384


@dataclass
class Image:
    """Pixels row-major, channels interleaved, little-endian for u16/f16/f32."""

    width: int
    height: int
    order: str
    dtype: str
    data: Any  # bytes, bytearray, memoryview or any object exposing the buffer protocol

    @property
    def channels(self) -> int:
        return ORDERS[self.order]

    @property
    def expected_nbytes(self) -> int:
        return self.width * self.height * self.channels * DTYPE_SIZES[self.dtype]

    def spec(self) -> Dict[str, Any]:
        return {
            "w": self.width,
            "h": self.height,
            "channels": self.channels,
            "dtype": self.dtype,
            "order": self.order,
        }


def check_spec(spec: Any, field: str, max_pixels: int) -> None:
    """Validate an image header before its frame is looked at."""
    if not isinstance(spec, dict):
        raise ProtocolError(ErrorCode.BAD_FIELD, f"image '{field}': header must be a map")
    for key in ("w", "h", "channels", "dtype", "order"):
        if key not in spec:
            raise ProtocolError(ErrorCode.MISSING_FIELD, f"image '{field}': header lacks '{key}'")
    w, h, channels = spec["w"], spec["h"], spec["channels"]
    for key, value in (("w", w), ("h", h), ("channels", channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ProtocolError(
                ErrorCode.BAD_FIELD, f"image '{field}': '{key}' must be a positive integer, got {short(value)}"
            )
    # isinstance first: a list or map is no dict key (a TypeError, not an answer, otherwise)
    if not isinstance(spec["dtype"], str) or spec["dtype"] not in DTYPE_SIZES:
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"image '{field}': dtype {short(spec['dtype'])} not one of {sorted(DTYPE_SIZES)}",
        )
    if not isinstance(spec["order"], str) or spec["order"] not in ORDERS:
        raise ProtocolError(
            ErrorCode.BAD_FIELD, f"image '{field}': order {short(spec['order'])} not one of {sorted(ORDERS)}"
        )
    if ORDERS[spec["order"]] != channels:
        raise ProtocolError(
            ErrorCode.BAD_FIELD,
            f"image '{field}': order {spec['order']} has {ORDERS[spec['order']]} channels, header says {channels}",
        )
    if w * h > max_pixels:
        raise ProtocolError(
            ErrorCode.IMAGE_TOO_LARGE,
            f"image '{field}' is {w}x{h} = {w * h} pixels, more than the limit of {max_pixels}",
            "raise the backend's --max-pixels or work on a smaller layer",
        )


def image_from_frame(spec: Dict[str, Any], frame: Any, field: str) -> Image:
    image = Image(spec["w"], spec["h"], spec["order"], spec["dtype"], frame)
    got = memoryview(frame).nbytes
    if got != image.expected_nbytes:
        raise ProtocolError(
            ErrorCode.FRAME_MISMATCH,
            f"image '{field}': frame has {got} bytes, header describes {image.expected_nbytes}",
        )
    return image
