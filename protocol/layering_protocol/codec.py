"""Envelope codec: frame 0 is a msgpack header, frames 1.. are the raw image bytes it describes.

Header: {"v": version, "id": message id, "re": id replied to or None, "type": name,
         "body": {field: value}, "images": [[field, spec], ...]}
"""

import dataclasses
import typing
import uuid
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import msgpack

from .errors import ErrorCode, ProtocolError
from .images import DEFAULT_MAX_PIXELS, Image, check_spec, image_from_frame
from .messages import MESSAGE_TYPES
from .version import PROTOCOL_VERSION

MAX_HEADER_BYTES = 1 << 20


@dataclass
class Envelope:
    message: Any
    id: str
    reply_to: Optional[str] = None
    version: int = PROTOCOL_VERSION


def new_id() -> str:
    return uuid.uuid4().hex


def _schema(cls: type) -> List[Tuple[str, Any, bool]]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append((f.name, hints[f.name], required))
    return out


def _is_image_list(tp: Any) -> bool:
    return typing.get_origin(tp) in (list, List) and typing.get_args(tp) == (Image,)


def _is_image_type(tp: Any) -> bool:
    return (tp is Image or (typing.get_origin(tp) is typing.Union and Image in typing.get_args(tp))
            or _is_image_list(tp))


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        return any(_type_ok(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is Any:
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (list, List):
        (arg,) = typing.get_args(tp) or (Any,)
        return isinstance(value, list) and all(_type_ok(v, arg) for v in value)
    if origin in (dict, typing.Dict) or tp is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return isinstance(value, tp)


def encode(message: Any, msg_id: Optional[str] = None, reply_to: Optional[str] = None) -> List[Any]:
    """Message -> list of frames (header bytes + image buffers, not copied)."""
    cls = type(message)
    if MESSAGE_TYPES.get(getattr(cls, "TYPE", None)) is not cls:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"not a protocol message: {cls.__name__}")
    body, images, frames = {}, [], []
    for name, tp, _ in _schema(cls):
        value = getattr(message, name)
        if _is_image_type(tp):
            for item in (value if _is_image_list(tp) else [value] if value is not None else []):
                if memoryview(item.data).nbytes != item.expected_nbytes:
                    raise ProtocolError(
                        ErrorCode.FRAME_MISMATCH,
                        f"image '{name}' has {memoryview(item.data).nbytes} bytes, expected {item.expected_nbytes}",
                    )
                images.append([name, item.spec()])  # a list field repeats its name, in order
                frames.append(item.data)
        else:
            body[name] = value
    header = {
        "v": PROTOCOL_VERSION,
        "id": msg_id or new_id(),
        "re": reply_to,
        "type": cls.TYPE,
        "body": body,
        "images": images,
    }
    return [msgpack.packb(header, use_bin_type=True), *frames]


def peek_id(frames: Sequence[Any]) -> Optional[str]:
    """Best-effort message id of a message that failed to decode, so the error can answer it."""
    try:
        header = msgpack.unpackb(bytes(frames[0]), raw=False, strict_map_key=False)
        msg_id = header.get("id")
        return msg_id if isinstance(msg_id, str) and msg_id else None
    except Exception:
        return None


def decode(frames: Sequence[Any], max_pixels: int = DEFAULT_MAX_PIXELS) -> Envelope:
    """Frames -> Envelope, raising ProtocolError with a precise code for anything malformed."""
    if not frames:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "empty message")
    raw = frames[0]
    if memoryview(raw).nbytes > MAX_HEADER_BYTES:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"header larger than {MAX_HEADER_BYTES} bytes")
    try:
        header = msgpack.unpackb(bytes(raw), raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "header is not valid msgpack", str(exc)) from None
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"header must be a map, got {type(header).__name__}")
    version = header.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.VERSION_MISMATCH,
            f"protocol version {version!r} received, this side speaks {PROTOCOL_VERSION}",
            "update the Krita plugin and the backend to the same release",
        )
    msg_id = header.get("id")
    if not isinstance(msg_id, str) or not msg_id:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "header lacks a message id")
    reply_to = header.get("re")
    if reply_to is not None and not isinstance(reply_to, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'re' must be a message id or nil")
    cls = MESSAGE_TYPES.get(header.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {header.get('type')!r}")
    body = header.get("body", {})
    images = header.get("images", [])
    if not isinstance(body, dict) or not isinstance(images, list):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'body' must be a map and 'images' a list")
    if len(images) != len(frames) - 1:
        raise ProtocolError(
            ErrorCode.FRAME_MISMATCH,
            f"header describes {len(images)} image frame(s), message has {len(frames) - 1}",
        )
    schema = {name: (tp, required) for name, tp, required in _schema(cls)}
    kwargs = {}
    for i, entry in enumerate(images):
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "each 'images' entry must be [field, spec]")
        name, spec = entry
        if name not in schema or not _is_image_type(schema[name][0]):
            raise ProtocolError(ErrorCode.BAD_FIELD, f"'{cls.TYPE}' has no image field '{name}'")
        check_spec(spec, name, max_pixels)
        image = image_from_frame(spec, frames[i + 1], name)
        if _is_image_list(schema[name][0]):
            kwargs.setdefault(name, []).append(image)
        elif name in kwargs:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"image field '{name}' given twice")
        else:
            kwargs[name] = image
    for name, value in body.items():
        if name not in schema:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"'{cls.TYPE}' has no field '{name}'")
        tp = schema[name][0]
        if _is_image_type(tp):
            raise ProtocolError(ErrorCode.BAD_FIELD, f"'{name}' must travel as an image frame")
        if not _type_ok(value, tp):
            raise ProtocolError(
                ErrorCode.BAD_FIELD, f"'{cls.TYPE}.{name}' has the wrong type: {type(value).__name__}"
            )
        kwargs[name] = value
    for name, (_, required) in schema.items():
        if required and name not in kwargs:
            raise ProtocolError(ErrorCode.MISSING_FIELD, f"'{cls.TYPE}' needs field '{name}'")
    return Envelope(cls(**kwargs), msg_id, reply_to, version)
