"""The backend's limits: what one message, one client and all jobs together may make it hold.

Every limit has a default that follows the machine (its RAM) or the pixel limit, and a `serve` option.
"""

import re
from dataclasses import dataclass

import psutil
from layering_protocol import DEFAULT_MAX_PIXELS

MEMORY_SHARE = 0.75  # default --max-memory: this share of the machine's RAM
MESSAGE_SHARE = 8  # a request may be at most 1/8 of the memory budget ...
BYTES_PER_REQUEST_PIXEL = 20  # ... and no larger than the largest valid split: f32 RGBA image + f32 mask
HEADER_SLACK = 1 << 20
# a message over its limit is still received (up to this much more) to answer it with an error; beyond
# that libzmq's MAXMSGSIZE drops the connection, as the in-flight check does for unfinished messages
REPLY_MARGIN_MIN = 64 << 20
REPLY_MARGIN_SHARE = 4
CLIENT_JOBS = 4  # queued + running jobs of one client (one key when served with keys)
JOBS = 32  # of all clients
QUEUED_INPUT_SHARE = 4  # queued jobs' images together: at most 1/4 of the memory budget
# ... of which one client's beyond its first queued job: at most 1/2, so one client (a key, or a connection where
# there are no keys) cannot hold the whole of it and turn everyone else away as busy
CLIENT_QUEUED_SHARE = 2
CLIENT_BACKLOG_BYTES = 128 << 20  # replies piling up for a client that does not read them
CLIENT_BACKLOG_MESSAGES = 4096
# a message more frames than this past MAX_REQUEST_FRAMES is no mistake: its sender is cut off instead of
# answered (each frame costs the loop ~2 us, and libzmq 64 bytes until the message's last frame)
FRAMES_CUT_MARGIN = 1024
CONNECTIONS = 4096  # open at once (libzmq takes ~24 KB each); beyond it one is closed as another comes
# descriptors kept free of connections under the open-files limit: the server's own files (logs, keys,
# models, /proc) and libzmq's, and room for libzmq to accept a newcomer (the oldest idle connection then goes)
RESERVED_FILES = 64
MIN_CONNECTIONS = 8

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, total: int | None = None) -> int:
    """'12G', '800M', '1.5g', '4096' (bytes) or, with `total`, '60%' of it -> bytes."""
    text = text.strip()
    if total is not None and text.endswith("%"):
        try:
            share = float(text[:-1])
        except ValueError:
            share = -1.0
        if not 0 < share <= 100:
            raise ValueError(f"{text!r}: a share must be between 0 and 100%")
        return int(total * share / 100)
    match = _SIZE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a size: use e.g. 12G, 800M" + (" or 60%" if total is not None else ""))
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def gib(nbytes: float) -> str:
    return f"{nbytes / (1 << 30):.1f} GB" if nbytes >= 1 << 30 else f"{nbytes / (1 << 20):.0f} MB"


@dataclass(frozen=True)
class Limits:
    max_pixels: int
    max_memory: int  # bytes the server process may use (its RSS)
    max_message: int  # bytes of one request, all frames together: over it -> too_large
    hard_message: int  # beyond this libzmq drops the connection (MAXMSGSIZE, in-flight check)
    client_jobs: int
    jobs: int
    queued_input: int  # bytes of the images of queued jobs, all clients
    client_backlog_bytes: int
    client_backlog_messages: int
    connections: int = CONNECTIONS
    job_seconds: float = 0.0  # how long one job may run in its worker (its models' loading too); 0: no limit

    @classmethod
    def make(cls, max_pixels: int = DEFAULT_MAX_PIXELS, max_memory: int = 0, max_message: int = 0,
             client_jobs: int = CLIENT_JOBS, jobs: int = JOBS, client_backlog: int = CLIENT_BACKLOG_BYTES,
             job_seconds: float = 0.0) -> "Limits":
        """0 picks the default: memory from the machine's RAM, the message size from it and the pixel limit."""
        memory = max_memory or int(psutil.virtual_memory().total * MEMORY_SHARE)
        message = max_message or min(max_pixels * BYTES_PER_REQUEST_PIXEL + HEADER_SLACK, memory // MESSAGE_SHARE)
        hard = message + max(REPLY_MARGIN_MIN, message // REPLY_MARGIN_SHARE)
        return cls(max_pixels, memory, message, hard, client_jobs, jobs, memory // QUEUED_INPUT_SHARE,
                   client_backlog, CLIENT_BACKLOG_MESSAGES, job_seconds=job_seconds)

    def describe(self) -> str:
        return (f"memory {gib(self.max_memory)}, message {gib(self.max_message)}, {self.max_pixels} pixels, "
                f"{self.client_jobs} jobs a client, {self.jobs} in all, client backlog "
                f"{gib(self.client_backlog_bytes)}, {self.connections} connections"
                + (f", {self.job_seconds:g} s a job" if self.job_seconds else ""))


def connection_cap(open_files: int, in_use: int, wanted: int = CONNECTIONS) -> int:
    """How many connections may be open at once under an open-files limit of `open_files` with `in_use`
    descriptors taken already: RESERVED_FILES stay free for the server's own files."""
    return max(MIN_CONNECTIONS, min(wanted, open_files - in_use - RESERVED_FILES))
