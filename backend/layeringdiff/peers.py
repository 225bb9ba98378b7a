"""What the server knows about its clients: each one's outgoing backlog, and the TCP connection behind it.

A ROUTER socket cannot close one peer's connection, but every received frame names the file descriptor it
came from (the SRCFD property) and the socket monitor names each accepted one. Shutting that TCP socket
down makes libzmq see the peer hang up: it drops the peer's pipe, frees what it buffered for it, and closes
the descriptor itself. libzmq may have closed and reused a descriptor by the time we act, so it is shut
down only while it still leads to the same peer address.

Nothing here opens a file once the server runs (the RSS comes from a /proc descriptor opened at start, a
connection's counters through its own descriptor): with every descriptor taken by a connection flood, the
watch and the checks go on.
"""

import ctypes
import ctypes.util
import functools
import logging
import os
import queue
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq

if sys.platform.startswith("linux"):
    import fcntl
    import termios

# struct tcp_info (linux/tcp.h): tcpi_bytes_acked and tcpi_bytes_received are u64s at these offsets (kernel 4.1+)
_TCPI_BYTES_ACKED = 120
_TCPI_BYTES_RECEIVED = 128
_TCP_INFO_SIZE = 232
HAS_TCP_INFO = sys.platform.startswith("linux") and hasattr(socket, "TCP_INFO")
# protocol bytes that never reach the application besides each frame's own header (counted exactly, see
# wire_bytes): greeting and handshake, heartbeats; generous, the limits compared with are megabytes
OVERHEAD_FIXED = 64 << 10
OVERHEAD_PER_SECOND = 256
CURVE_FRAME = 33  # a CURVE MESSAGE command's name, nonce, MAC and flags around each frame
WATCH_S = 0.01  # a peer on loopback sends ~1 GB/s: checked this often, it overshoots the limit by ~10 MB
WATCH_BUSY_S = 0.002  # while some message is unfinished: libzmq takes ~10M tiny frames a second
WATCH_SHARE = 3  # the watch sleeps at least this many times as long as a scan took (thousands of connections)
# An unfinished message is libzmq's until its last frame: 64 bytes a frame (its zmq_msg_t) besides the bytes
# (an empty frame takes 2 bytes on the wire: 31 bytes more than its wire bytes for each). The watch sees the
# wire bytes libzmq takes from each connection (the kernel's count, less what waits in the socket) and the
# process's RSS. Whenever the memory beyond what the loop holds and those bytes explain reaches a new high, the
# growth is charged to the connections libzmq took bytes from meanwhile, those that took the fewest first (the
# tiniest frames), each at most 31 times what it took; a large upload arriving meanwhile is left nothing.
FRAME_HELD = 64
HELD_PER_WIRE_BYTE = FRAME_HELD // 2 - 1
UNEXPLAINED_SLACK = 8 << 20  # growth charged to nobody: the loop's own allocations (mixed traffic: < 4 MB)
# only a message charged at least this share of what its bytes can hold (tiny frames: about 1; 8-byte frames
# 0.17; a large image's: 0) is hung up for its frames
FILLED_MIN = 0.25
CHARGED_SCANS = 3  # and only once charged in this many looks (a flood grows in every look, a one-off does not)
HIGH_DECAY = 32 << 20  # bytes a second: a high left by memory freed since (a large message dropped) sinks
GLOBAL_MIN_BYTES = 4 << 20  # over the memory budget, only a peer holding more than this is hung up
SETTLE_S = 1.0  # after a hang-up the memory-based rules wait (at most this long) for libzmq to free the message
TRIM_S = 0.2  # before a hang-up on the memory's evidence, freed memory is given back (at most this often)

# Over the connection cap: a connection that has sent nothing this long is idle (a client's first message follows
# its connection within milliseconds), and a source holding more than this many connections floods (a client's
# docker, Models list and command line hold a few; a studio behind one address without keys a few each)
IDLE_AFTER_S = 2.0
CLIENT_CONNECTIONS = 16

log = logging.getLogger("layeringdiff.server")


def wire_bytes(size: int, curve: bool = False) -> int:
    """The fewest bytes a frame of `size` bytes takes on the wire (ZMTP 3: flags and a 1- or 8-byte length,
    inside a CURVE MESSAGE command with keys), so that what the loop has received never counts as more than
    the peer sent."""
    body = size + CURVE_FRAME if curve else size
    return body + (2 if body < 256 else 9)


class Rss:
    """A process's resident memory (this one's, or a worker's by pid). On Linux from a /proc/PID/statm
    descriptor opened once and re-read in place: a reading needs no new descriptor, so it works while a
    connection flood holds all of them (psutil opens the file each time). The last good figure when a reading
    fails."""

    def __init__(self, pid: int | None = None) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self.pid = pid  # another process (a worker); None: this one
        self.fd: int | None = None
        try:
            self.fd = os.open(f"/proc/{pid or 'self'}/statm", os.O_RDONLY)
        except (OSError, AttributeError):
            self.fd = None
        self.last = 0
        self.last = self()

    def __call__(self) -> int:
        try:
            if self.fd is not None:
                self.last = int(os.pread(self.fd, 128, 0).split()[1]) * self.page
            else:
                import psutil

                try:
                    self.last = psutil.Process(self.pid).memory_info().rss
                except psutil.Error:  # a worker gone: its last figure stands
                    pass
        except (OSError, ValueError, IndexError):
            pass
        return self.last

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


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


def bytes_waiting(fd: int) -> int:
    """Bytes received on this connection that libzmq has not read from the socket yet (Linux: SIOCINQ)."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0


def _tcp_info_u64(fd: int, offset: int) -> int | None:
    if not HAS_TCP_INFO:
        return None
    info = _on_socket(fd, lambda s: s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE))
    if info is None or len(info) < offset + 8:
        return None
    return int.from_bytes(info[offset:offset + 8], sys.byteorder)


def tcp_bytes_received(fd: int) -> int | None:
    """Bytes the kernel has received on this TCP connection (Linux); None elsewhere or when fd is gone."""
    return _tcp_info_u64(fd, _TCPI_BYTES_RECEIVED)


def tcp_bytes_acked(fd: int) -> int | None:
    """Bytes of ours the other end has acknowledged on this TCP connection (Linux; None elsewhere or when fd is
    gone): it stops growing once a client that reads nothing has its receive buffer full."""
    return _tcp_info_u64(fd, _TCPI_BYTES_ACKED)


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
    delivered: int = 0  # wire bytes of the frames handed to the loop (wire_bytes: never more than sent)
    closing: bool = False  # hung up; libzmq closes it next
    key: str = ""  # the client's CURVE key, once a message has named it
    # the in-flight watch's reckoning of this connection's unfinished message: bytes libzmq took (all along,
    # and since the message began), the memory charged to it, and `delivered` when it began (a delivered
    # message ends it)
    taken: int | None = None
    window_taken: int = 0
    charge: int = 0
    charged: int = 0  # looks in which it was charged
    window_delivered: int = 0

    def buffered(self) -> int | None:
        """Bytes this connection sent that the loop has not received yet: an unfinished multipart message
        (libzmq delivers a message only when its last frame is in), or complete ones waiting, in libzmq or
        still in the socket. None where the kernel does not tell (not Linux)."""
        received = tcp_bytes_received(self.fd)
        if received is None:
            return None
        return max(0, received - self.delivered - self.overhead())

    def overhead(self) -> int:
        return OVERHEAD_FIXED + OVERHEAD_PER_SECOND * int(time.monotonic() - self.since)

    @property
    def source(self) -> Any:
        """Who holds this connection, for sharing the connections out: its client key, else its host."""
        return self.key or (self.address[0] if isinstance(self.address, tuple) else self.address)


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

    def received(self, fd: int, wire: int, address: Any = None) -> Connection:
        """Count `wire` bytes to the connection on `fd` that leads to `address` (the sender's, read when it was
        first seen): the monitor's events may come after the frame, so the record may still be of the
        connection that had the descriptor before."""
        conn = self.by_fd.get(fd)
        if conn is None or (address is not None and conn.address != address):
            conn = self.accepted(fd)
        if conn is None:  # closed since: count it nowhere
            return Connection(fd, None)
        conn.delivered += wire
        return conn

    def over(self, cap: int, now: float | None = None) -> Connection | None:
        """With more than `cap` connections open, the one to close. Among the connections of the sources (a client
        key, else a host) holding more than CLIENT_CONNECTIONS, where there are such (a flood), else among all:
        the oldest idle one (silent for IDLE_AFTER_S: a slowloris flood's give way to newcomers); else, with
        several silent, the oldest of them (the newest, a newcomer, stays); else the newest that has sent a message
        (a flood of connections that each sent a ping closes its own, not a newcomer, which is silent when it is
        accepted); else the newest."""
        live = [c for c in list(self.by_fd.values()) if not c.closing]
        if len(live) <= cap:
            return None
        now = time.monotonic() if now is None else now
        held = Counter(c.source for c in live)
        crowd = [c for c in live if held[c.source] > CLIENT_CONNECTIONS] or live
        silent = [c for c in crowd if not c.delivered]
        idle = [c for c in silent if now - c.since >= IDLE_AFTER_S]
        if idle:
            return min(idle, key=lambda c: c.since)
        if len(silent) > 1:
            return min(silent, key=lambda c: c.since)
        active = [c for c in crowd if c.delivered]
        return max(active or crowd, key=lambda c: c.since)


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
    sent: int = 0  # replies libzmq has finished with
    # the last look at how far its replies got (the bytes the client acknowledged, and `sent`), and when they
    # last moved or there were none
    progress: tuple[int, int] | None = None
    moved: float = field(default_factory=time.monotonic)

    def settle(self) -> None:
        """Forget the replies libzmq has finished with (in order: one peer's messages go out in order)."""
        while self.sending and all(t.done for t in self.sending[0][0]):
            self.sending_bytes -= self.sending.popleft()[1]
            self.sent += 1

    def pending(self) -> int:
        """Bytes of replies on their way to this client: held by libzmq, or waiting for room in its pipe."""
        self.settle()
        return self.queued_bytes + self.sending_bytes

    def stalled(self, now: float) -> float:
        """Seconds its replies have been waiting without the client taking a byte of them (0 while they move, with
        none waiting, or where the kernel does not tell: Linux only). A client reads in libzmq's own thread whatever
        its application does; one whose replies stand still has stopped reading (or its whole process or network
        has)."""
        if not self.pending():
            self.progress, self.moved = None, now
            return 0.0
        acked = tcp_bytes_acked(self.fd) if self.fd is not None else None
        if acked is None:  # not Linux, or no TCP connection: a reply being read cannot be told from one that is not
            self.progress, self.moved = None, now
            return 0.0
        mark = (acked, self.sent)
        if mark != self.progress:
            self.progress, self.moved = mark, now
        return now - self.moved

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


@dataclass
class HungUp:
    """A connection the in-flight watch closed, for the loop to log."""

    conn: Connection
    buffered: int  # wire bytes of its unfinished message
    held: int  # what that message holds in libzmq, as estimated
    why: str  # "bytes", "frames" or "memory"
    frames: int = 0  # at least so many frames, by the memory charged to it


class InflightWatch(threading.Thread):
    """Hangs up a connection whose unfinished message grows out of the loop's sight: once its bytes pass
    `limit`, once it holds more than its bytes explain by more than `frames` frames (many tiny frames: libzmq
    keeps 64 bytes for each), or, while the process is over `memory`, the one that holds the most. Reports
    each on `hung_up` for the loop to log.

    `known()` is what the loop itself holds (messages in hand, replies waiting, queued jobs' images); `busy()`
    says a job's memory passes through this process (a request to a worker, a result from one), which is nobody's
    unfinished message (no charges then)."""

    def __init__(self, conns: Connections, limit: int, memory: int, frames: int, stop: threading.Event, rss: Rss,
                 known: Callable[[], int], busy: Callable[[], bool]) -> None:
        super().__init__(name="layeringdiff-inflight", daemon=True)
        self.conns, self.limit, self.memory, self.frames, self.stop = conns, limit, memory, frames, stop
        self.rss, self.known, self.busy = rss, known, busy
        self.hung_up: queue.SimpleQueue[HungUp] = queue.SimpleQueue()
        self.settling: Connection | None = None
        self.settle_until = 0.0
        self.trimmed = 0.0
        self.failed = False
        self.base: int | None = None  # the unexplained memory when nothing was unfinished
        self.high = UNEXPLAINED_SLACK  # above the base: the highest charged so far
        self.looked = time.monotonic()

    def run(self) -> None:
        wait = WATCH_S
        while not self.stop.wait(wait):
            start = time.monotonic()
            unfinished = False
            try:
                unfinished = self.scan()
            except Exception:  # EMFILE, or a bug: logged once, the watch goes on
                if not self.failed:
                    log.exception("the in-flight watch failed (it goes on; logged once)")
                self.failed = True
            wait = max(WATCH_BUSY_S if unfinished else WATCH_S, WATCH_SHARE * (time.monotonic() - start))

    def scan(self) -> bool:
        """One look at every connection; True when some message is still arriving."""
        rows = []
        for conn in list(self.conns.by_fd.values()):
            if conn.closing:
                continue
            received = tcp_bytes_received(conn.fd)
            if received is None:
                continue
            buffered = max(0, received - conn.delivered - conn.overhead())
            if buffered > self.limit:
                self._hang_up(HungUp(conn, buffered, buffered, "bytes"))
                continue
            taken = received - bytes_waiting(conn.fd)  # by libzmq
            rows.append((conn, buffered, min(buffered, max(0, taken - conn.delivered - conn.overhead())), taken))
        if self._settled() and not self._charge(rows):
            release_memory()  # memory freed but kept by the allocator is no connection's: judged again
            self._charge(rows, trimmed=True)
        return any(buffered for _, buffered, _, _ in rows)

    def _settled(self) -> bool:
        """After a hang-up on the memory's evidence: whether libzmq has let go of that message (closed the
        connection, so its frames are freed) and the freed memory is given back."""
        conn = self.settling
        if conn is None:
            return True
        if peer_address(conn.fd) == conn.address and time.monotonic() < self.settle_until:
            return False
        self.settling = None
        release_memory()
        return False  # measured afresh on the next scan

    def _charge(self, rows: list[tuple[Connection, int, int, int]], trimmed: bool = False) -> bool:
        """Charge a new high of the unexplained memory to the connections libzmq took bytes from since the last
        scan, and hang up one that holds too much; False when one would be, but freed memory should be given
        back and the evidence read again first. Each row: (connection, bytes the loop has not received, those
        of them in libzmq, bytes libzmq took all along)."""
        saved = (self.base, self.high, self.looked,
                 [(c.taken, c.window_taken, c.charge, c.charged, c.window_delivered) for c, *_ in rows])
        rss = self.rss()
        in_libzmq = sum(held for _, _, held, _ in rows)
        free = rss - (self.known() if in_libzmq else 0) - in_libzmq
        now = time.monotonic()
        if self.base is None or not in_libzmq or self.busy():
            # nothing unfinished, or a job runs in this process (its allocations are nobody's message): afresh
            self.base, self.high = free, UNEXPLAINED_SLACK
        # only growth beyond the highest so far is charged: memory freed since, and what the allocator keeps
        # of it, is not charged twice (a high the memory has left sinks back slowly)
        level = free - self.base
        growth = max(0, level - self.high)
        if growth:
            self.high = level
        else:
            self.high = max(UNEXPLAINED_SLACK, level, self.high - int(HIGH_DECAY * (now - self.looked)))
        self.looked = now
        takers = []
        for conn, _, held, taken in rows:
            took = taken - conn.taken if conn.taken is not None else 0
            conn.taken = taken
            if not held or conn.delivered != conn.window_delivered:  # a new message: a new reckoning
                conn.window_taken, conn.charge, conn.charged, conn.window_delivered = 0, 0, 0, conn.delivered
            if held and took > 0:
                conn.window_taken += took
                takers.append((took, conn))
        for took, conn in sorted(takers, key=lambda row: row[0]):  # the tiniest frames first
            share = min(growth, HELD_PER_WIRE_BYTE * took)
            conn.charge += share
            conn.charged += share > 0
            growth -= share
        over: list[tuple[int, HungUp]] = []
        largest: tuple[tuple[bool, int], HungUp] | None = None
        for conn, buffered, held, _ in rows:
            full = (conn.charge >= FILLED_MIN * HELD_PER_WIRE_BYTE * conn.window_taken > 0
                    and conn.charged >= CHARGED_SCANS)
            total = held + conn.charge
            if full and (conn.charge > FRAME_HELD * self.frames or total > self.limit):
                over.append((conn.charge, HungUp(conn, buffered, total, "frames", conn.charge // FRAME_HELD)))
            if total > GLOBAL_MIN_BYTES and (largest is None or (full, total) > largest[0]):
                largest = ((full, total), HungUp(conn, buffered, total, "memory"))
        if (over or (largest is not None and rss > self.memory)) and not trimmed and now - self.trimmed > TRIM_S:
            self.trimmed = now  # judged again as if this look had not been
            self.base, self.high, self.looked = saved[0], saved[1], saved[2]
            for (conn, *_), state in zip(rows, saved[3], strict=True):
                conn.taken, conn.window_taken, conn.charge, conn.charged, conn.window_delivered = state
            return False
        # one at a time, and the memory it held given back before another is judged: the one charged most; over
        # the budget, the one holding most (full ones first)
        if over:
            self._hang_up(max(over, key=lambda o: o[0])[1])
        elif largest is not None and rss > self.memory:  # several, each within the limits, over the budget together
            self._hang_up(largest[1])
        return True

    def _hang_up(self, what: HungUp) -> None:
        if hang_up(what.conn.fd, what.conn.address):
            what.conn.closing = True
            self.hung_up.put(what)
            if what.why != "bytes":
                self.settling, self.settle_until = what.conn, time.monotonic() + SETTLE_S


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
    high-water mark after a large message or job). Any thread may call it (glibc locks each arena)."""
    try:
        trim = _malloc_trim()
    except OSError:  # no descriptor left to look the library up: next time
        return
    if trim is not None:
        trim(0)
