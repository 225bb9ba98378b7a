"""The server's network side: one ZeroMQ ROUTER socket that no client can stall, and what is known of each peer.

Only the loop thread calls in here. A message is received frame by frame and no longer kept once over its limits;
its sender is cut off once far over the frame limit (the rest drained a turn at a time). Connections are capped
below the open-files limit and no missing descriptor (EMFILE) stops the loop. Replies are sent without ever
blocking and wait per client up to a backlog, beyond which the client is cut off (its replies dropped, its jobs
cancelled, its connection closed). With keys, a revoked key's connections are cut off too.
"""

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import zmq
from layering_protocol import MAX_REQUEST_FRAMES, Error, ProtocolError, clip, encode
from zmq.utils.monitor import recv_monitor_message  # imported now: a module found later needs a free descriptor

from ..keys import ClientList, allowed_clients, server_keys
from ..limits import FRAMES_CUT_MARGIN, Limits, connection_cap, gib
from ..peers import (
    FRAME_HELD,
    HAS_TCP_INFO,
    Connections,
    InflightWatch,
    Outgoing,
    Peer,
    Rss,
    hang_up,
    peer_address,
    release_memory,
    wire_bytes,
)
from ..replies import bounded, incident_logger
from .drain import FrameDropper
from .files import open_files

log = logging.getLogger("layeringdiff.server")

HEARTBEAT_MS = 2000  # ZeroMQ transport heartbeats: a dead peer's connection is dropped after the timeout
HEARTBEAT_TIMEOUT_MS = 6000
IO_THREADS = 2  # a second I/O thread cuts 4096^2 transfers by ~15% on loopback
LINGER_MS = 200
SNDHWM = 64  # messages per client inside libzmq; larger replies are tracked by bytes (see Peer)
RCVHWM = 64
TRACK_BYTES = zmq.COPY_THRESHOLD  # smaller frames are copied by pyzmq, larger ones tracked until sent
BATCH = 256  # messages handled per turn of the loop, so replies and checks go on under a flood
TURN_FRAMES = 16384  # frames received per turn by pyzmq (~2 us each): a huge message is drained over many turns
RELEASE_BYTES = 64 << 20
IDLE_PEER_S = 600.0
# A client whose replies stand still this long (it acknowledged none of their bytes: it reads nothing, though its
# connection is kept alive) is cut off and what it was sent freed; a reply may always be in transit (PROTOCOL.md
# section 6), so without this a few connections that ask for large echoes or results and never read them would hold
# the whole memory budget and every job would be refused too_large. When a job needs memory they hold, sooner.
REPLY_STALL_S = 60.0
REPLY_STALL_PRESSED_S = 5.0
LOG_BURST = 20  # log lines about rejected messages per second; the rest are counted
EVICT_LOG_S = 10.0  # connections closed over the limit: one log line at most this often
LOG_CHARS = 300


class Host(Protocol):
    """What the transport asks of the server it carries messages for."""

    def on_message(self, peer: Peer, buffers: list[Any], count: int, total: int) -> None: ...

    def on_leave(self, identity: bytes, cut: bool) -> None: ...  # its jobs are pointless now

    def held_by_jobs(self) -> int: ...  # bytes of the requests of queued and running jobs

    def busy(self) -> bool: ...  # a job runs in the server process itself (none do: workers run them)


class AllowedKeys(ClientList):
    """The keys folder is read at each handshake (keys.ClientList). When it cannot be read (no descriptor left
    under a connection flood) the list the loop read last decides: the handshake is answered either way (an
    exception would end pyzmq's authenticator thread, and every later handshake would hang)."""

    def __init__(self, transport: "Transport", folder: str) -> None:
        super().__init__(folder)
        self.transport = transport

    def callback(self, domain: str, key: bytes) -> bool:
        try:
            return super().callback(domain, key)
        except OSError as exc:
            self.transport.trouble("reading the keys folder", exc)
            return key.decode() in self.transport.allowed


@dataclass
class Draining:
    """The rest of a message far over the frame limit, received a turn at a time and dropped (libzmq hands
    out nothing else before its last frame, and offers no way to drop it)."""

    peer: Peer
    frames: int
    nbytes: int


def _frame_property(frame: Any, name: Any) -> Any:
    try:
        return frame.get(name)
    except (zmq.ZMQError, OSError, ValueError, TypeError):
        return None


class Transport:
    def __init__(self, host: Host, limits: Limits, keys: str | None, stopping: Any) -> None:
        self.host, self.limits, self.keys, self.stopping = host, limits, keys, stopping
        self.ctx: zmq.Context | None = None
        self.auth: Any = None  # pyzmq's ZAP authenticator thread when serving with keys
        self.public_key = ""
        self.router: zmq.Socket | None = None
        self.monitor: zmq.Socket | None = None
        self.endpoint = ""
        self.peers: dict[bytes, Peer] = {}
        self.waiting: set[bytes] = set()  # peers whose replies wait for room in their pipe
        self.conns = Connections()
        self.watch: InflightWatch | None = None
        self.allowed: dict[str, str] = {}  # allowed client keys (Z85) -> names, when served with keys
        self.names: dict[str, str] = {}  # every key seen allowed -> its name (for the log, after revocation)
        self.rss: Rss | None = None
        self.curve = False
        self.cut_frames = MAX_REQUEST_FRAMES + FRAMES_CUT_MARGIN
        self.max_connections = limits.connections
        self.draining: Draining | None = None
        self.dropper: FrameDropper | None = None
        self.in_hand = 0  # bytes of the message the loop is handling (for the in-flight watch)
        self.troubles: set[str] = set()  # OSErrors outlived, each logged once
        self.evicted = 0  # connections closed over the limit since the last log line about it
        self.evict_logged = -EVICT_LOG_S
        self.log_second = 0
        self.log_count = 0
        self.log_skipped = 0

    # ---- set-up and tear-down -------------------------------------------------------------
    def bind(self, host: str, port: int) -> str:
        curve = server_keys(self.keys) if self.keys else None
        self.rss = Rss()  # its descriptor opened now, while there are free ones
        release_memory()  # looks malloc_trim up now (it runs `ldconfig -p`), not first under a flood
        self.ctx = zmq.Context(io_threads=IO_THREADS)
        self.router = self.ctx.socket(zmq.ROUTER)
        if curve is not None:
            from zmq.auth.thread import ThreadAuthenticator

            assert self.keys is not None
            self.auth = ThreadAuthenticator(self.ctx)
            self.auth.start()
            self.auth.configure_curve_callback(domain="*", credentials_provider=AllowedKeys(self, self.keys))
            self.router.curve_publickey, self.router.curve_secretkey = curve
            self.router.curve_server = True
            self.curve = True
            self.public_key = curve[0].decode()
            self.read_keys(strict=True)
        router = self.router
        router.setsockopt(zmq.LINGER, LINGER_MS)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full pipe -> EAGAIN (we queue), a gone peer -> error
        router.setsockopt(zmq.SNDHWM, SNDHWM)
        router.setsockopt(zmq.RCVHWM, RCVHWM)
        router.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
        router.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        # libzmq's own limit is per frame and drops the connection without a word; our limit on a whole
        # message (answered with an error) is below it
        router.setsockopt(zmq.MAXMSGSIZE, self.limits.hard_message)
        self.dropper = FrameDropper(router, TURN_FRAMES)  # compiled now, before any flood
        self.monitor = router.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED)
        address = f"tcp://{host}"
        if port:
            router.bind(f"{address}:{port}")
            self.endpoint = f"{address}:{port}"
        else:
            self.endpoint = f"{address}:{router.bind_to_random_port(address)}"
        if HAS_TCP_INFO:
            self.watch = InflightWatch(self.conns, self.limits.hard_message, self.limits.max_memory, self.cut_frames,
                                       self.stopping, self.rss, self.held, self.host.busy)
            self.watch.start()
        soft, in_use = open_files()
        if soft:
            self.max_connections = connection_cap(soft, in_use, self.limits.connections)
        log.info("limits: %s%s", self.limits.describe(),
                 f" (at most {self.max_connections} under the open-files limit of {soft})"
                 if self.max_connections < self.limits.connections else "")
        return self.endpoint

    def close(self, others: list[zmq.Socket], term: bool = True) -> None:
        """Send what waits (within the router's linger), close the sockets (ours and `others` of the same
        context) and end the context (not when `term` is False: a thread still holds a socket of it, and term()
        would wait for that thread)."""
        for identity in list(self.waiting):
            self.flush(identity)
        if self.router is not None and self.monitor is not None:
            try:
                self.router.disable_monitor()
            except zmq.ZMQError:
                pass
        for sock in (self.monitor, *others, self.router):
            if sock is not None:
                sock.close(linger=LINGER_MS if sock is self.router else 0)
        if self.auth is not None:
            self.auth.stop()
        if self.ctx is not None and term:
            self.ctx.term()
        if self.watch is not None:
            self.watch.join(1.0)  # it reads through the RSS descriptor
        if self.rss is not None and (self.watch is None or not self.watch.is_alive()):
            self.rss.close()

    # ---- periodic checks ----------------------------------------------------------------------
    def check_connections(self, busy: set[bytes]) -> None:
        """Connections the in-flight watch hung up (a message over the hard limit still arriving: libzmq keeps
        an unfinished multipart message until its last frame, only the kernel's byte count shows it), and
        connections libzmq closed (missed events). `busy`: peers with jobs (never forgotten as idle)."""
        while self.watch is not None and not self.watch.hung_up.empty():
            item = self.watch.hung_up.get()
            conn = item.conn
            peers = [p for p in self.peers.values() if p.fd == conn.fd and p.address == conn.address]
            who = self.label(peers[0]) if peers else conn.address
            if item.why == "frames":
                log.warning("closed the connection from %s: at least %d frames of a message not received yet, %s on "
                            "the wire (libzmq keeps %d bytes for each until the last; a request has at most %d "
                            "frames)", who, item.frames, gib(item.buffered), FRAME_HELD, MAX_REQUEST_FRAMES)
            else:
                log.warning("closed the connection from %s: %s of a message not received yet (the limit is %s, the "
                            "memory budget %s)", who, gib(item.held), gib(self.limits.hard_message),
                            gib(self.limits.max_memory))
            for peer in peers:
                self.cut(peer, "it sent a message over the size limit", quiet=True)
            release_memory()
        for fd in list(self.conns.by_fd):
            self.conns.still_open(fd)
        now = time.monotonic()
        if self.evicted and now - self.evict_logged >= EVICT_LOG_S:
            log.info("... and closed %d more connections over the limit", self.evicted)
            self.evict_logged, self.evicted = now, 0
        self.cut_stalled(self.stalled(REPLY_STALL_S, now), now)
        for peer in list(self.peers.values()):
            conn = self.conns.by_fd.get(peer.fd) if peer.fd is not None else None
            if peer.fd is not None and (conn is None or conn.address != peer.address):
                self.gone(peer)
            elif peer.fd is None and now - peer.last_seen > IDLE_PEER_S and peer.identity not in busy \
                    and not peer.queue and peer.identity not in self.waiting:
                self.peers.pop(peer.identity, None)  # no descriptor to follow (not a TCP peer): forgotten when idle

    def stalled(self, after: float = REPLY_STALL_PRESSED_S, now: float | None = None) -> list[Peer]:
        """The clients whose replies have stood still for `after` seconds (Peer.stalled)."""
        now = time.monotonic() if now is None else now
        return [peer for peer in list(self.peers.values()) if not peer.cut and peer.stalled(now) >= after]

    def cut_stalled(self, peers: list[Peer], now: float) -> None:
        """Cut off these clients (stalled()'s), their replies freed as libzmq drops their connections."""
        for peer in peers:
            pending = peer.pending()
            self.cut(peer, f"it has taken nothing of its replies for {now - peer.moved:.0f} s ({gib(pending)} "
                           "waiting)")

    def read_keys(self, strict: bool = False) -> None:
        """The allowed keys; once serving, a folder that cannot be read (no descriptor left) keeps the list
        read last."""
        assert self.keys is not None
        try:
            allowed = allowed_clients(self.keys)
        except OSError as exc:
            if strict:
                raise
            self.trouble("reading the keys folder", exc)
            return
        self.allowed = {key.decode(): name for key, name in allowed.items()}
        self.names.update(self.allowed)

    def check_keys(self) -> None:
        """A key deleted from clients/ cuts its open connections off too, not only new ones."""
        if not any(p.key for p in self.peers.values()):
            return
        self.read_keys()
        for peer in list(self.peers.values()):
            if peer.key and peer.key not in self.allowed and not peer.cut:
                self.cut(peer, f"its key ({self.names.get(peer.key, 'unknown')}) was revoked")

    def monitor_events(self) -> None:
        assert self.monitor is not None
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                if self.conns.accepted(fd) is not None:
                    self._over_connections()
            else:
                self.conns.still_open(fd)

    def _over_connections(self) -> None:
        """Keep the connections under the cap, so descriptors stay free for the server's own files and for
        libzmq to accept the next one (at the open-files limit it would retry the accept, spinning)."""
        while (conn := self.conns.over(self.max_connections)) is not None:
            conn.closing = True  # closed by libzmq next (a descriptor that moved on is forgotten)
            if not hang_up(conn.fd, conn.address):
                self.conns.still_open(conn.fd)
                continue
            self.evicted += 1
            now = time.monotonic()
            if now - self.evict_logged >= EVICT_LOG_S:
                log.warning("%d connections open, the most the backend keeps: closed %d (of the sources holding "
                            "too many: the oldest idle or silent one, else the newest)", self.max_connections,
                            self.evicted)
                self.evict_logged, self.evicted = now, 0

    def trouble(self, what: str, exc: OSError) -> None:
        """An OSError the server outlives (typically EMFILE: a connection flood holds every descriptor),
        logged once for each `what`."""
        if what not in self.troubles:
            self.troubles.add(what)
            log.warning("%s failed: %s; the backend goes on serving (logged once)", what, exc)

    def held(self) -> int:
        """Bytes of received messages and replies the loop holds (for the in-flight watch's thread, which
        charges memory beyond them and the unreceived bytes to unfinished messages)."""
        held = self.in_hand + self.host.held_by_jobs()
        for peer in list(self.peers.values()):
            held += peer.queued_bytes + peer.sending_bytes
        return held

    # ---- receiving ----------------------------------------------------------------------------
    def receive(self) -> None:
        """Up to BATCH messages or TURN_FRAMES frames, frame by frame: past the frame or byte limit, frames are
        received (libzmq has the whole message by now) and dropped at once instead of kept; past the frame
        limit by FRAMES_CUT_MARGIN, the sender is cut off and the rest drained a turn at a time, so checks,
        replies and SIGTERM go on (other clients wait: libzmq hands out nothing else before its last frame)."""
        assert self.router is not None
        budget = TURN_FRAMES
        recv = self.router.recv
        for _ in range(BATCH):
            if self.draining is not None:
                budget = self._drain(budget)
                if self.draining is not None:
                    return
            if budget <= 0:
                return
            try:
                first = recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            kept: list[Any] = []
            frame = None
            count = total = wire = 0
            more = first.more
            while more:
                if count >= self.cut_frames:  # and more to come
                    self._flood(first.bytes, kept[0], count, total, wire)
                    break
                frame = recv(copy=False)
                more = frame.more
                size = len(frame)
                count += 1
                total += size
                wire += wire_bytes(size, self.curve)
                if count == 1 or (count <= MAX_REQUEST_FRAMES and total <= self.limits.max_message):
                    kept.append(frame)  # the header always: the answer names what is wrong in it
            budget -= count
            if kept and self.draining is None:
                self.in_hand = total
                try:
                    self._message(first.bytes, kept, count, total, wire)
                finally:
                    kept = first = frame = None  # type: ignore[assignment]  # freed before the watch stops counting them
                    self.in_hand = 0
            if total > RELEASE_BYTES:  # a large message refused or answered: its memory back to the system
                release_memory()

    def _flood(self, identity: bytes, header: Any, count: int, total: int, wire: int) -> None:
        """A message past the frame limit by the margin: no mistake of a client. Its sender is cut off (logged
        once, its connection closed) and the rest of its message drained without a reply."""
        peer = self._peer(identity, header)
        self._account(peer, wire)
        conn = self.conns.by_fd.get(peer.fd) if peer.fd is not None else None
        watched = conn is not None and conn.closing and conn.address == peer.address  # the watch closed it, and said so
        self.cut(peer, f"it sent a message of more than {self.cut_frames} frames (a request has at most "
                       f"{MAX_REQUEST_FRAMES})", quiet=watched)
        self.draining = Draining(peer, count, total)

    def _drain(self, budget: int) -> int:
        """Up to `budget` more frames of the message being drained (pyzmq's count: the compiled dropper takes
        as many times more in the same time), dropped as they come; returns what is left of the budget."""
        assert self.dropper is not None and self.draining is not None
        scale = self.dropper.turn_frames // TURN_FRAMES
        frames, size, more = self.dropper(budget * scale)
        drain = self.draining
        drain.frames += frames
        drain.nbytes += size
        self._account(drain.peer, size + frames * wire_bytes(0, self.curve))  # the fewest wire bytes
        if not more:
            self.draining = None
            log.info("dropped the %d frames (%s) of the message from %s", drain.frames, gib(drain.nbytes),
                     self.label(drain.peer))
            release_memory()
        return budget - -(-frames // scale)

    def _account(self, peer: Peer, wire: int) -> None:
        """Count what the loop received from this peer's connection (the in-flight watch compares it with the
        kernel's count)."""
        if peer.fd is not None:
            conn = self.conns.received(peer.fd, wire, peer.address)
            if peer.address is None:
                peer.address = conn.address
            if peer.key and conn.address == peer.address:
                conn.key = peer.key  # its connections are shared out by key (Connections.over)

    def _peer(self, identity: bytes, frame: Any) -> Peer:
        peer = self.peers.get(identity)
        if peer is None:
            fd = _frame_property(frame, zmq.SRCFD)
            fd = fd if isinstance(fd, int) and fd >= 0 else None
            key = _frame_property(frame, "User-Id") if self.auth is not None else None
            # its address read now, not from the connections known: a descriptor closed and taken by this
            # connection may still be recorded as the last one's (the monitor's events come later), and the
            # peer would then be taken for gone, its jobs withdrawn without a word
            peer = Peer(identity, fd, key or "", peer_address(fd) if fd is not None else None)
            self.peers[identity] = peer
        peer.last_seen = time.monotonic()
        return peer

    def _message(self, identity: bytes, frames: list[Any], count: int, total: int, wire: int) -> None:
        peer = self._peer(identity, frames[0])
        self._account(peer, wire)
        if peer.cut:
            return
        if self.keys and peer.key not in self.allowed:
            self.read_keys()  # a key added after the last look is fine; one deleted is cut off at once
            if peer.key not in self.allowed:
                self.cut(peer, "its key is not (or no longer) allowed")
                return
        self.host.on_message(peer, [f.buffer for f in frames], count, total)

    def rejected(self, peer: Peer, text: str) -> None:
        """Log a refused message: cut short, and at most LOG_BURST lines a second (a fuzzing client would
        otherwise fill the disk)."""
        second = int(time.monotonic())
        if second != self.log_second:
            if self.log_skipped:
                log.info("... and %d more rejected messages", self.log_skipped)
            self.log_second, self.log_count, self.log_skipped = second, 0, 0
        self.log_count += 1
        if self.log_count <= LOG_BURST:
            log.info("rejected a message from %s: %s", self.label(peer), clip(text, LOG_CHARS))
        else:
            self.log_skipped += 1

    def label(self, peer: Peer) -> str:
        if peer.key:
            return f"client {self.names.get(peer.key, peer.key[:8])}"
        return f"client {peer.identity.hex()[:10]}"

    # ---- sending ------------------------------------------------------------------------------
    def send(self, identity: bytes, message: Any, reply_to: str | None = None) -> None:
        try:
            frames = encode(bounded(message), reply_to=reply_to)
        except ProtocolError as exc:  # a reply over the header limit: say so instead
            incident = incident_logger(log, f"encoding a {type(message).__name__}")()
            frames = encode(Error(exc.code, f"internal error (log id {incident}): {exc.text}"), reply_to=reply_to)
        self.forward(identity, frames)

    def forward(self, identity: bytes, frames: list[Any]) -> None:
        """Queue a reply for its client and send what its pipe takes, without ever blocking."""
        peer = self.peers.get(identity)
        if peer is None or peer.cut:  # the client is gone or cut off: nothing more goes to it
            return
        nbytes = sum(memoryview(f).nbytes for f in frames)
        peer.queue.append(Outgoing(frames, nbytes))
        peer.queued_bytes += nbytes
        self.flush(identity)
        messages, backlog = peer.backlog()
        if messages > self.limits.client_backlog_messages or backlog > self.limits.client_backlog_bytes:
            self.cut(peer, f"it does not read its replies ({messages} messages, {gib(backlog)} waiting)")

    def flush(self, identity: bytes) -> None:
        assert self.router is not None
        peer = self.peers.get(identity)
        if peer is None or peer.cut:
            self.waiting.discard(identity)
            return
        while peer.queue:
            out = peer.queue[0]
            try:
                trackers = self._send_now(identity, out.frames)
            except zmq.Again:  # its pipe is full: the client is slow or not reading
                self.waiting.add(identity)
                return
            except zmq.ZMQError as exc:  # EHOSTUNREACH: the client went away; its jobs are pointless now
                log.info("%s unreachable (%s); cancelling its jobs", self.label(peer), exc)
                self.gone(peer)
                return
            peer.queue.popleft()
            peer.queued_bytes -= out.nbytes
            if trackers:
                peer.sending.append((trackers, out.nbytes))
                peer.sending_bytes += out.nbytes
        self.waiting.discard(identity)

    def _send_now(self, identity: bytes, frames: list[Any]) -> list[zmq.MessageTracker]:
        """One message, all or nothing: ROUTER checks the peer's pipe at the identity frame only."""
        assert self.router is not None
        self.router.send(identity, zmq.SNDMORE | zmq.NOBLOCK)
        trackers = []
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            flags = zmq.NOBLOCK | (zmq.SNDMORE if i < last else 0)
            if memoryview(frame).nbytes >= TRACK_BYTES:  # zero-copy: tracked until libzmq lets go of it
                trackers.append(self.router.send(frame, flags, copy=False, track=True))
            else:
                self.router.send(frame, flags)
        return trackers

    def cut(self, peer: Peer, why: str, quiet: bool = False) -> None:
        """This client gets nothing more: its replies are dropped, its jobs cancelled, its connection closed."""
        if peer.cut:
            return
        peer.cut = why
        peer.drop()
        self.waiting.discard(peer.identity)
        self.host.on_leave(peer.identity, cut=True)
        closed = peer.fd is not None and hang_up(peer.fd, peer.address)
        conn = self.conns.by_fd.get(peer.fd) if closed and peer.fd is not None else None
        if conn is not None and conn.address == peer.address:
            conn.closing = True  # the in-flight watch leaves it be (and does not log it again)
        release_memory()
        if not quiet:
            log.warning("cut off %s: %s; its replies are dropped, its jobs cancelled%s", self.label(peer), why,
                        ", its connection closed" if closed else "")

    def gone(self, peer: Peer) -> None:
        self.host.on_leave(peer.identity, cut=False)
        peer.drop()
        self.waiting.discard(peer.identity)
        self.peers.pop(peer.identity, None)
