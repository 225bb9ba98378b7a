"""Bounds every message must keep, so that neither side ever echoes or allocates what a hostile peer sends."""

import reprlib
from typing import Any

MAX_HEADER_BYTES = 256 * 1024  # the msgpack header (frame 0); images travel in their own frames
MAX_ID_LENGTH = 128  # message ids ("id", "re"); new_id() makes 32 hex characters
MAX_TYPE_LENGTH = 64
MAX_REQUEST_FRAMES = 3  # header + the most image frames a request has (split/peel: image + mask)

_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40
_repr.maxlevel = 2
_repr.maxlist = _repr.maxdict = _repr.maxtuple = _repr.maxset = 4


def short(value: Any) -> str:
    """repr() cut to a few dozen characters: for error texts and log lines about what a peer sent."""
    return _repr.repr(value)


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, saying how long the text was when it was cut."""
    if len(text) <= limit:
        return text
    suffix = f"... ({len(text)} chars)"
    return text[: max(0, limit - len(suffix))] + suffix
