"""Dropping the rest of a message far over the frame limit at libzmq's own speed.

A ROUTER socket hands out nothing else before a message's last frame, so every other client waits while the loop
receives the rest of a flood. pyzmq takes 1-2 us a frame: a 300,000-frame message that arrived whole before the
in-flight watch could hang it up held every ping for 0.4-0.6 s. A numba loop that calls libzmq's zmq_recv and
zmq_getsockopt itself takes about 0.05 us a frame. It must call the libzmq that pyzmq loaded (another copy would
not know the socket), found in /proc/self/maps; where it cannot be found (not Linux, libzmq linked into pyzmq) or
numba cannot compile the loop, pyzmq's recv does the work.
"""

import ctypes
import functools
import logging
from typing import Any

import numpy as np
import zmq

log = logging.getLogger("layeringdiff.server")

ZMQ_DONTWAIT = 1  # zmq.h; never waits inside a message: libzmq delivers a message's frames together
ZMQ_RCVMORE = 13
FAST_TURN_FRAMES = 1 << 19  # frames a turn for the compiled loop (about 25 ms); pyzmq's turn is the transport's


def _loaded_libzmq() -> str | None:
    """The path of the one libzmq mapped into this process, if exactly one is."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "libzmq" in line.rsplit("/", 1)[-1]}
    except OSError:
        return None
    paths = {p for p in paths if p.startswith("/")}
    return paths.pop() if len(paths) == 1 else None


@functools.cache
def _compiled() -> Any:
    """The compiled loop, or None. Compiled once a process, when the first server binds (about 0.3 s; numba cannot
    keep it on disk: it calls C functions found at run time), so no flood ever waits for it."""
    path = _loaded_libzmq()
    if path is None:
        return None
    try:
        import numba

        lib = ctypes.CDLL(path)  # the library already mapped: the same one pyzmq calls
        recv, get = lib.zmq_recv, lib.zmq_getsockopt
        recv.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        recv.restype = ctypes.c_int
        get.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        get.restype = ctypes.c_int

        @numba.njit(nogil=True)
        def drop(sock: int, budget: int, scratch: Any, more: Any, size: Any) -> tuple[int, int, int]:
            frames = nbytes = 0
            while frames < budget:
                got = recv(sock, scratch.ctypes.data, 0, ZMQ_DONTWAIT)  # truncated to nothing; returns its size
                if got < 0:
                    return frames, nbytes, -1
                frames += 1
                nbytes += got
                size[0] = 4
                get(sock, ZMQ_RCVMORE, more.ctypes.data, size.ctypes.data)
                if more[0] == 0:
                    return frames, nbytes, 0
            return frames, nbytes, 1

        drop.compile("(int64, int64, uint8[::1], int32[::1], int64[::1])")
        return drop
    except Exception as exc:  # no numba, no symbol, a compiler error: the slower loop works the same
        log.info("frames of a flood are dropped by pyzmq (%s: %s)", type(exc).__name__, exc)
        return None


class FrameDropper:
    """Receives and drops the frames of the message being received on `sock`, up to a turn's budget."""

    def __init__(self, sock: zmq.Socket, turn_frames: int, fast: bool = True) -> None:
        self.sock = sock
        self.drop = _compiled() if fast else None
        self.turn_frames = FAST_TURN_FRAMES if self.drop is not None else turn_frames
        self.scratch = np.zeros(1, np.uint8)
        self.more = np.zeros(1, np.int32)
        self.size = np.zeros(1, np.int64)

    @property
    def compiled(self) -> bool:
        return self.drop is not None

    def __call__(self, budget: int) -> tuple[int, int, bool]:
        """(frames dropped, their bytes, whether the message goes on). Call only inside a message."""
        if self.drop is not None:
            frames, nbytes, state = self.drop(self.sock.underlying, budget, self.scratch, self.more, self.size)
            if state >= 0:
                return frames, nbytes, bool(state)
            raise zmq.ZMQError(zmq.zmq_errno())  # as pyzmq's recv would (the socket closed under it)
        recv = self.sock.recv
        frames = nbytes = 0
        more = True
        while more and frames < budget:
            frame = recv(copy=False)
            more = frame.more
            frames += 1
            nbytes += len(frame)
        return frames, nbytes, more
