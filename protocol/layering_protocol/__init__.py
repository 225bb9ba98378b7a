"""Wire protocol between the Krita plugin and the LayeringDiff backend (stdlib + msgpack only)."""

from .codec import Envelope, check_header, decode, encode, new_id, peek_id
from .errors import ErrorCode, ProtocolError
from .images import DEFAULT_MAX_PIXELS, DTYPE_SIZES, ORDERS, Image
from .limits import MAX_HEADER_BYTES, MAX_ID_LENGTH, MAX_REQUEST_FRAMES, clip, short
from .messages import (
    JOB_TYPES,
    LAYER_ORDERS,
    MESSAGE_TYPES,
    Accepted,
    Cancel,
    Cancelled,
    Capabilities,
    Echo,
    EchoReply,
    Error,
    Generate,
    Hello,
    Peel,
    Ping,
    Pong,
    Progress,
    Result,
    Split,
    SplitLayers,
    Status,
    StatusReply,
)
from .prompt import background_prompt, parse_prompt
from .version import PROTOCOL_VERSION, RELEASE, compare_releases, server_release

__all__ = [
    "DEFAULT_MAX_PIXELS", "DTYPE_SIZES", "JOB_TYPES", "LAYER_ORDERS", "MAX_HEADER_BYTES", "MAX_ID_LENGTH",
    "MAX_REQUEST_FRAMES", "MESSAGE_TYPES", "ORDERS", "PROTOCOL_VERSION", "RELEASE",
    "Accepted", "Cancel", "Cancelled", "Capabilities", "Echo", "EchoReply", "Envelope", "Error",
    "ErrorCode", "Generate", "Hello", "Image", "Peel", "Ping", "Pong", "Progress", "ProtocolError",
    "Result", "Split", "SplitLayers", "Status", "StatusReply", "background_prompt", "check_header", "clip", "decode",
    "encode", "compare_releases", "new_id", "parse_prompt", "peek_id", "server_release", "short",
]
