"""What the server knows about its clients: each one's outgoing backlog, and the TCP connection behind it.

A ROUTER socket cannot close one peer's connection, but every received frame names the file descriptor it
came from (the SRCFD property) and the socket monitor names each accepted one. Shutting that TCP socket
down makes libzmq see the peer hang up: it drops the peer's pipe, frees what it buffered for it, and closes
the descriptor itself. libzmq may have closed and reused a descriptor by the time we act, so it is shut
down only while it still leads to the same peer address.
"""

import ctypes
import ctypes.util
import functools
import queue
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq

# struct tcp_info (linux/tcp.h): tcpi_bytes_received is a u64 at this offset (kernel 4.1+)
_TCPI_BYTES_RECEIVED = 128
_TCP_INFO_SIZE = 232
HAS_TCP_INFO = sys.platform.startswith("linux") and hasattr(socket, "TCP_INFO")
# protocol bytes that never reach the application: ZMTP frame headers and CURVE boxes (about 40 bytes a
# frame), greeting and handshake, heartbeats; generous, since the limits it is compared with are megabytes
OVERHEAD_PER_FRAME = 96
OVERHEAD_FIXED = 1 << 20
OVERHEAD_PER_SECOND = 256
WATCH_S = 0.02  # a peer on loopback sends ~1 GB/s: checked this often, it overshoots the limit by ~20 MB
GLOBAL_MIN_BYTES = 16 << 20  # over the memory budget, only a peer buffering more than this is hung up


def _on_socket(fd: int, action: Callable[[socket.socket], Any]) -> Any:
    """Run `action` on a socket object that borrows `fd` (never closes it); None when fd is no socket."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        return action(sock)
    except OSError:
        return None
    finally:
        sock.detach()


def peer_address(fd: int) -> Any:
    return _on_socket(fd, lambda s: s.getpeername())


def tcp_bytes_received(fd: int) -> int | None:
    """Bytes the kernel has received on this TCP connection (Linux); None elsewhere or when fd is gone."""
    if not HAS_TCP_INFO:
        return None
    info = _on_socket(fd, lambda s: s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE))
    if info is None or len(info) < _TCPI_BYTES_RECEIVED + 8:
        return None
    return int.from_bytes(info[_TCPI_BYTES_RECEIVED:_TCPI_BYTES_RECEIVED + 8], sys.byteorder)


def hang_up(fd: int, address: Any) -> bool:
    """Shut the connection down if fd still leads to `address`; libzmq notices and cleans up."""
    def shut(sock: socket.socket) -> bool:
        if address is None or sock.getpeername() != address:
            return False
        sock.shutdown(socket.SHUT_RDWR)
        return True

    return bool(_on_socket(fd, shut))


@dataclass
class Connection:
    """One accepted TCP connection: what the application has received from it so far."""

    fd: int
    address: Any
    since: float = field(default_factory=time.monotonic)
    delivered: int = 0  # payload bytes of the frames handed to the loop
    frames: int = 0

    def buffered(self) -> int | None:
        """Bytes libzmq holds for this connection that the loop has not received yet: an unfinished
        multipart message (libzmq delivers a message only when its last frame is in), or complete ones
        waiting. None where the kernel does not tell (not Linux)."""
        received = tcp_bytes_received(self.fd)
        if received is None:
            return None
        overhead = (OVERHEAD_FIXED + OVERHEAD_PER_FRAME * self.frames
                    + OVERHEAD_PER_SECOND * int(time.monotonic() - self.since))
        return max(0, received - self.delivered - overhead)


class Connections:
    """Accepted connections by file descriptor, from the socket monitor and from received frames."""

    def __init__(self) -> None:
        self.by_fd: dict[int, Connection] = {}

    def accepted(self, fd: int) -> Connection | None:
        address = peer_address(fd)
        if address is None:  # closed again already
            self.by_fd.pop(fd, None)
            return None
        known = self.by_fd.get(fd)
        if known is None or known.address != address:
            self.by_fd[fd] = known = Connection(fd, address)
        return known

    def still_open(self, fd: int) -> bool:
        """Forget the connection if libzmq closed it (its descriptor gone, or reused for another peer)."""
        conn = self.by_fd.get(fd)
        if conn is None:
            return False
        address = peer_address(fd)
        if address is None or address != conn.address:
            del self.by_fd[fd]
            return False
        return True

    def received(self, fd: int, nbytes: int, frames: int) -> Connection:
        conn = self.by_fd.get(fd) or self.accepted(fd)  # the frame may come before the monitor's event
        if conn is None:  # closed since: count it nowhere
            return Connection(fd, None)
        conn.delivered += nbytes
        conn.frames += frames
        return conn


@dataclass
class Outgoing:
    frames: list[Any]
    nbytes: int


@dataclass
class Peer:
    """One ROUTER identity (one connection of one client) and the replies on their way to it.

    `queue` holds replies libzmq would not take yet (its pipe to this peer is full: the client is not
    reading); `sending` the large ones libzmq holds, until their tracker says libzmq is done with them.
    """

    identity: bytes
    fd: int | None = None
    key: str = ""  # the client's CURVE public key (Z85) when served with keys
    address: Any = None  # of its connection: a reused descriptor leads elsewhere
    queue: deque[Outgoing] = field(default_factory=deque)
    queued_bytes: int = 0
    sending: deque[tuple[list[zmq.MessageTracker], int]] = field(default_factory=deque)
    sending_bytes: int = 0
    cut: str = ""  # why this peer gets nothing more (over its backlog, key revoked)
    last_seen: float = field(default_factory=time.monotonic)

    def settle(self) -> None:
        """Forget the replies libzmq has finished with (in order: one peer's messages go out in order)."""
        while self.sending and all(t.done for t in self.sending[0][0]):
            self.sending_bytes -= self.sending.popleft()[1]

    def backlog(self) -> tuple[int, int]:
        """(messages, bytes) waiting beyond the one being sent now: a single large result or echo may always
        be in transit, what piles up behind it is the client's backlog."""
        self.settle()
        messages = len(self.queue) + len(self.sending)
        total = self.queued_bytes + self.sending_bytes
        first = self.sending[0][1] if self.sending else self.queue[0].nbytes if self.queue else 0
        return max(0, messages - 1), total - first

    def drop(self) -> None:
        self.queue.clear()
        self.queued_bytes = 0


class InflightWatch(threading.Thread):
    """Hangs up a connection as soon as the bytes libzmq buffers for it pass `limit` (an unfinished multipart
    message grows there, out of the loop's sight), or, while the process is over `memory`, the one with the
    most buffered; reports each on `hung_up` for the loop to log."""

    def __init__(self, conns: Connections, limit: int, memory: int, stop: threading.Event) -> None:
        super().__init__(name="layeringdiff-inflight", daemon=True)
        self.conns, self.limit, self.memory, self.stop = conns, limit, memory, stop
        self.hung_up: queue.SimpleQueue[tuple[Connection, int]] = queue.SimpleQueue()

    def run(self) -> None:
        import psutil

        process = psutil.Process()
        while not self.stop.wait(WATCH_S):
            largest: tuple[int, Connection | None] = (GLOBAL_MIN_BYTES, None)
            for conn in list(self.conns.by_fd.values()):
                buffered = conn.buffered()
                if buffered is None:
                    continue
                if buffered > self.limit:
                    self._hang_up(conn, buffered)
                elif buffered > largest[0]:
                    largest = (buffered, conn)
            # several peers, each within the limit, together over the budget: the largest goes
            if largest[1] is not None and process.memory_info().rss > self.memory:
                self._hang_up(largest[1], largest[0])

    def _hang_up(self, conn: Connection, buffered: int) -> None:
        if hang_up(conn.fd, conn.address):
            self.hung_up.put((conn, buffered))


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, looked up once (find_library runs `ldconfig -p`); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc keeps it otherwise, so the RSS would stay at its
    high-water mark after a large message or job)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
