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
from .limits import MAX_HEADER_BYTES, MAX_ID_LENGTH, MAX_TYPE_LENGTH, short
from .messages import MESSAGE_TYPES, REQUEST_TYPES, check_ranges
from .version import PROTOCOL_VERSION


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
    packed = msgpack.packb(header, use_bin_type=True)
    if len(packed) > MAX_HEADER_BYTES:  # the other side would refuse it: say so here, where it is made
        raise ProtocolError(ErrorCode.TOO_LARGE, f"'{cls.TYPE}' header of {len(packed)} bytes, more than the "
                                                 f"limit of {MAX_HEADER_BYTES}")
    return [packed, *frames]


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def peek_id(frames: Sequence[Any]) -> Optional[str]:
    """Best-effort message id of a message that failed to decode, so the error can answer it (only an id
    within the protocol's bounds: an oversized one is never echoed)."""
    try:
        if memoryview(frames[0]).nbytes > MAX_HEADER_BYTES:
            return None
        header = msgpack.unpackb(bytes(frames[0]), raw=False, strict_map_key=False)
        msg_id = header.get("id")
        return msg_id if _valid_id(msg_id) else None
    except Exception:
        return None


def _is_version(value: Any) -> bool:
    """Exactly the integer version: msgpack's true and 1.0 compare equal to 1 in Python, but are not it."""
    return type(value) is int and value == PROTOCOL_VERSION


def _header(raw: Any, requests_only: bool = False) -> Tuple[dict, type, str, Optional[str]]:
    """The header frame -> (header, message class, id, reply-to), each checked; `requests_only`: a reply's type
    is refused as unknown (a server's view), before its fields are looked at."""
    if memoryview(raw).nbytes > MAX_HEADER_BYTES:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"header of {memoryview(raw).nbytes} bytes, more than the limit "
                                                 f"of {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(bytes(raw), raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "header is not valid msgpack", short(str(exc))) from None
    if not isinstance(header, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"header must be a map, got {type(header).__name__}")
    version = header.get("v")
    if not _is_version(version):
        raise ProtocolError(
            ErrorCode.VERSION_MISMATCH,
            f"protocol version {short(version)} received, this side speaks {PROTOCOL_VERSION}",
            "update the Krita plugin and the backend to the same release",
        )
    msg_id = header.get("id")
    if not _valid_id(msg_id):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"header lacks a message id (a string of 1 to {MAX_ID_LENGTH} "
                                                   "characters)")
    reply_to = header.get("re")
    if reply_to is not None and not _valid_id(reply_to):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"'re' must be a message id (1 to {MAX_ID_LENGTH} characters) "
                                                   "or nil")
    type_name = header.get("type")
    if not isinstance(type_name, str) or len(type_name) > MAX_TYPE_LENGTH:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"'type' must be a message type name, got {short(type_name)}")
    cls = MESSAGE_TYPES.get(type_name)
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {short(type_name)}")
    if requests_only and type_name not in REQUEST_TYPES:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"'{type_name}' is a reply, not a request")
    if not isinstance(header.get("body", {}), dict) or not isinstance(header.get("images", []), list):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "'body' must be a map and 'images' a list")
    return header, cls, msg_id, reply_to


def _image_specs(cls: type, images: list, max_pixels: int) -> List[Tuple[str, dict]]:
    """The header's image entries, each a field of the message with a valid spec within the pixel limit."""
    schema = {name: tp for name, tp, _ in _schema(cls)}
    out = []
    for entry in images:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "each 'images' entry must be [field, spec]")
        name, spec = entry
        if name not in schema or not _is_image_type(schema[name]):
            raise ProtocolError(ErrorCode.BAD_FIELD, f"'{cls.TYPE}' has no image field {short(name)}")
        check_spec(spec, name, max_pixels)
        out.append((name, spec))
    return out


def check_header(raw: Any, max_pixels: int = DEFAULT_MAX_PIXELS, requests_only: bool = False) -> Tuple[str, int]:
    """Check a header without its image frames (a message refused for its size is answered with what is
    wrong in it first); returns (message id, number of image frames it describes)."""
    header, cls, msg_id, _ = _header(raw, requests_only)
    return msg_id, len(_image_specs(cls, header.get("images", []), max_pixels))


def decode(frames: Sequence[Any], max_pixels: int = DEFAULT_MAX_PIXELS, requests_only: bool = False) -> Envelope:
    """Frames -> Envelope, raising ProtocolError with a precise code for anything malformed; `requests_only`:
    _header's."""
    if not frames:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "empty message")
    header, cls, msg_id, reply_to = _header(frames[0], requests_only)
    body = header.get("body", {})
    images = header.get("images", [])
    if len(images) != len(frames) - 1:
        raise ProtocolError(
            ErrorCode.FRAME_MISMATCH,
            f"header describes {len(images)} image frame(s), message has {len(frames) - 1}",
        )
    schema = {name: (tp, required) for name, tp, required in _schema(cls)}
    kwargs: dict = {}
    for i, (name, spec) in enumerate(_image_specs(cls, images, max_pixels)):
        image = image_from_frame(spec, frames[i + 1], name)
        if _is_image_list(schema[name][0]):
            kwargs.setdefault(name, []).append(image)
        elif name in kwargs:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"image field '{name}' given twice")
        else:
            kwargs[name] = image
    for name, value in body.items():
        if name not in schema:
            raise ProtocolError(ErrorCode.BAD_FIELD, f"'{cls.TYPE}' has no field {short(name)}")
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
    message = cls(**kwargs)
    check_ranges(message)
    return Envelope(message, msg_id, reply_to, PROTOCOL_VERSION)
