"""Backend server: a ZeroMQ ROUTER socket loop that no client can stall, and one worker thread for jobs.

Only the loop thread touches the ROUTER socket. The worker sends its replies through an inproc PAIR
socket, and the loop forwards them. Jobs run one at a time; cancel, ping and status are answered
while a job runs; every failure becomes an error reply (a traceback goes to the log under an id that the
reply names, never into the reply) and the loop keeps serving.

Job ids belong to the client that sent them: jobs are kept by (connection, id), so a client can neither
take nor probe another's ids. An id is taken from `accepted` until the job's last reply (result, error or
cancelled) is forwarded, by the loop thread, which alone keeps `jobs`. A queued job that is cancelled
leaves the queue at once (answered `cancelled` then); a running one stops at its next step and stops
counting toward the limits at once.

Bounds (the numbers are in limits.py): a message is received frame by frame and no longer kept once over
its limits, and its sender is cut off once far over the frame limit; connections are capped below the
open-files limit (raised to the hard limit at start), and no missing descriptor (EMFILE) stops the loop;
replies are sent without ever blocking and wait per client up to a backlog, beyond which the client is cut
off (its replies dropped, its jobs cancelled, its connection closed); jobs are counted per client and
overall; a job's estimated peak memory (job_memory.py) must fit the memory budget when it is queued and again
when it starts, and a running job that takes the server over the budget is stopped.
"""

import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import psutil
import zmq
from layering_protocol import (
    DEFAULT_MAX_PIXELS,
    JOB_TYPES,
    MAX_REQUEST_FRAMES,
    PROTOCOL_VERSION,
    Accepted,
    Cancel,
    Cancelled,
    Capabilities,
    Echo,
    EchoReply,
    Error,
    ErrorCode,
    Hello,
    Ping,
    Pong,
    Progress,
    ProtocolError,
    Result,
    Status,
    StatusReply,
    check_header,
    clip,
    decode,
    encode,
    peek_id,
)
from layering_protocol.version import SERVER_NAME
from zmq.utils.monitor import recv_monitor_message  # imported now: a module found later needs a free descriptor

from . import __version__
from .errors import ML_HINT, InputError, JobCancelled, NotAvailable, missing_ml_module
from .job_memory import estimate_job, models_needed, weight_bytes
from .keys import ClientList, allowed_clients, is_loopback, server_keys
from .limits import FRAMES_CUT_MARGIN, Limits, connection_cap, gib
from .models import REGISTRY, ModelConfig, ModelManager
from .peers import (
    FRAME_HELD,
    HAS_TCP_INFO,
    Connections,
    InflightWatch,
    Outgoing,
    Peer,
    Rss,
    hang_up,
    release_memory,
    wire_bytes,
)
from .pipeline import available_jobs, check_request, run_job

log = logging.getLogger("layeringdiff.server")

HEARTBEAT_MS = 2000  # ZeroMQ transport heartbeats: a dead peer's connection is dropped after the timeout
HEARTBEAT_TIMEOUT_MS = 6000
POLL_MS = 100
WAITING_POLL_MS = 5  # while replies wait for room in some client's pipe
IO_THREADS = 2  # a second I/O thread cuts 4096^2 transfers by ~15% on loopback
SHUTDOWN_JOIN_S = 0.75  # a job that does not stop by then is left behind: the process exits without it
LINGER_MS = 200
SNDHWM = 64  # messages per client inside libzmq; larger replies are tracked by bytes (see Peer)
RCVHWM = 64
TRACK_BYTES = zmq.COPY_THRESHOLD  # smaller frames are copied by pyzmq, larger ones tracked until sent
BATCH = 256  # messages handled per turn of the loop, so replies and checks go on under a flood
TURN_FRAMES = 16384  # frames received per turn (~2 us each): a huge message is drained over many turns
CHECK_S = 0.25  # connections, keys, memory, parent
RELEASE_BYTES = 64 << 20
IDLE_PEER_S = 600.0
PARENT_CHECK_S = 1.0
PROGRESS_MIN_INTERVAL_S = 0.05  # progress events are coalesced to this rate, stage changes always go
LOG_BURST = 20  # log lines about rejected messages per second; the rest are counted
EVICT_LOG_S = 10.0  # connections closed over the limit: one log line at most this often
FILES_WANTED = 1 << 16  # the soft open-files limit is raised this far at most (the hard limit where lower)
LOG_CHARS = 300
TEXT_CHARS = 1000  # error texts and details in replies
DETAIL_CHARS = 2000
# refusals of a job request before `accepted` name the job (its id), so a client can tell which request it was
JOB_REFUSALS = (ErrorCode.BUSY, ErrorCode.TOO_LARGE, ErrorCode.BAD_INPUT)


def pid_alive(pid: int, started_ppid: int) -> bool:
    """psutil, not os.kill(pid, 0): on Windows that call would terminate the process. A dead parent
    that nobody reaped still "exists" as a zombie, but we have been re-parented away from it."""
    if pid == started_ppid and os.getppid() != started_ppid:
        return False
    return psutil.pid_exists(pid)


def bounded(message: Any) -> Any:
    """An error's texts may quote what a client sent: cut to a bounded length."""
    if not isinstance(message, Error):
        return message
    return Error(message.code, clip(message.text, TEXT_CHARS), clip(message.detail, DETAIL_CHARS),
                 message.job if message.job is None else clip(message.job, 128))


def _say(line: str) -> None:
    """A line for whoever started us; stdout may be closed by now (the plugin gone): never raise."""
    try:
        print(line, flush=True)
    except (OSError, ValueError):
        try:  # keep the interpreter's exit from failing on the same closed pipe
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    parent_pid: int | None = None  # stop when this process is gone (Krita started us and crashed)
    models: ModelConfig = field(default_factory=ModelConfig)
    keys: str | None = None  # CURVE keys folder (`layeringdiff keys init`); required beyond loopback
    max_memory: int = 0  # bytes; 0: 75% of the machine's RAM
    max_message: int = 0  # bytes; 0: from the pixel limit and the memory budget
    max_client_jobs: int = 0  # 0: limits.CLIENT_JOBS
    max_jobs: int = 0  # 0: limits.JOBS
    client_backlog: int = 0  # bytes; 0: limits.CLIENT_BACKLOG_BYTES

    def limits(self) -> Limits:
        given = {k: v for k, v in (("client_jobs", self.max_client_jobs), ("jobs", self.max_jobs),
                                   ("client_backlog", self.client_backlog)) if v}
        return Limits.make(self.max_pixels, self.max_memory, self.max_message, **given)


@dataclass(eq=False)  # compared by identity: the queue finds a job without comparing its images
class Job:
    id: str
    identity: bytes
    message: Any
    owner: str = ""  # the client's key, or its connection: what the per-client job limit counts
    input_bytes: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    stage: str = "queued"
    why: tuple[str, str] | None = None  # (code, text) when stopped for another reason than a cancel request

    def stop(self, code: str, text: str) -> None:
        if self.why is None:
            self.why = (code, text)
        self.cancel.set()


def raise_open_files() -> int:
    """Raise the soft open-files limit (RLIMIT_NOFILE) to the hard one, so a connection flood meets the higher
    limit (connections are capped below it anyway; beyond FILES_WANTED some libraries' loops over every
    descriptor number grow long). Returns the soft limit now; 0 where there is none (Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, FILES_WANTED)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft
    for target in (want, 10240):  # macOS refuses more than OPEN_MAX (10240) with an unlimited hard limit
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_files() -> tuple[int, int]:
    """(the soft open-files limit, descriptors open now); (0, 0) where they cannot be read."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except ImportError:
        return 0, 0
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return soft, len(os.listdir(folder))
        except OSError:
            continue
    return soft, 0


class AllowedKeys(ClientList):
    """The keys folder is read at each handshake (keys.ClientList). When it cannot be read (no descriptor left
    under a connection flood) the list the loop read last decides: the handshake is answered either way (an
    exception would end pyzmq's authenticator thread, and every later handshake would hang)."""

    def __init__(self, server: "Server") -> None:
        assert server.config.keys is not None
        super().__init__(server.config.keys)
        self.server = server

    def callback(self, domain: str, key: bytes) -> bool:
        try:
            return super().callback(domain, key)
        except OSError as exc:
            self.server._trouble("reading the keys folder", exc)
            return key.decode() in self.server.allowed


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


class Server:
    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.limits = self.config.limits()
        self.ctx: zmq.Context | None = None
        self.auth: Any = None  # pyzmq's ZAP authenticator thread when serving with keys
        self.public_key = ""
        self.router: zmq.Socket | None = None
        self.monitor: zmq.Socket | None = None
        self.inbox: zmq.Socket | None = None
        self.endpoint = ""
        # the queue, shared with the worker (under `ready`); a job leaves it when the worker takes it or it is cancelled
        self.ready = threading.Condition()
        self.pending: deque[Job] = deque()
        self.closing = False  # the worker takes no more jobs
        self.jobs: dict[tuple[bytes, str], Job] = {}  # queued or running, by (client, id); the loop thread's alone
        self.current: Job | None = None
        self.stopping = threading.Event()
        self.worker: threading.Thread | None = None
        self.started_ppid = os.getppid()
        self.models = ModelManager(self.config.models)
        self.peers: dict[bytes, Peer] = {}
        self.waiting: set[bytes] = set()  # peers whose replies wait for room in their pipe
        self.conns = Connections()
        self.watch: InflightWatch | None = None
        self.allowed: dict[str, str] = {}  # allowed client keys (Z85) -> names, when served with keys
        self.names: dict[str, str] = {}  # every key seen allowed -> its name (for the log, after revocation)
        self.rss: Rss | None = None
        self.idle_rss = 0
        self.curve = False
        self.cut_frames = MAX_REQUEST_FRAMES + FRAMES_CUT_MARGIN
        self.max_connections = self.limits.connections
        self.draining: Draining | None = None
        self.in_hand = 0  # bytes of the message the loop is handling (for the in-flight watch)
        self.troubles: set[str] = set()  # OSErrors outlived, each logged once
        self.evicted = 0  # connections closed over the limit since the last log line about it
        self.evict_logged = -EVICT_LOG_S
        self.next_check = 0.0
        self.next_parent_check = 0.0
        self.log_second = 0
        self.log_count = 0
        self.log_skipped = 0

    # ---- set-up and tear-down -------------------------------------------------------------
    def bind(self) -> str:
        if not self.config.keys and not is_loopback(self.config.host):
            raise ValueError(f"serving on {self.config.host} would let anyone who can reach it run jobs: create keys "
                             "with `layeringdiff keys init DIR` and serve with --keys DIR")
        curve = server_keys(self.config.keys) if self.config.keys else None
        self.rss = Rss()  # its descriptor opened now, while there are free ones
        release_memory()  # looks malloc_trim up now (it runs `ldconfig -p`), not first under a flood
        self.ctx = zmq.Context(io_threads=IO_THREADS)
        self.router = self.ctx.socket(zmq.ROUTER)
        if curve is not None:
            from zmq.auth.thread import ThreadAuthenticator

            self.auth = ThreadAuthenticator(self.ctx)
            self.auth.start()
            self.auth.configure_curve_callback(domain="*", credentials_provider=AllowedKeys(self))
            self.router.curve_publickey, self.router.curve_secretkey = curve
            self.router.curve_server = True
            self.curve = True
            self.public_key = curve[0].decode()
            self._read_keys(strict=True)
        self.router.setsockopt(zmq.LINGER, LINGER_MS)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a full pipe -> EAGAIN (we queue), a gone peer -> error
        self.router.setsockopt(zmq.SNDHWM, SNDHWM)
        self.router.setsockopt(zmq.RCVHWM, RCVHWM)
        self.router.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
        self.router.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        # libzmq's own limit is per frame and drops the connection without a word; our limit on a whole
        # message (answered with an error) is below it
        self.router.setsockopt(zmq.MAXMSGSIZE, self.limits.hard_message)
        self.monitor = self.router.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED)
        address = f"tcp://{self.config.host}"
        if self.config.port:
            self.router.bind(f"{address}:{self.config.port}")
            self.endpoint = f"{address}:{self.config.port}"
        else:
            port = self.router.bind_to_random_port(address)
            self.endpoint = f"{address}:{port}"
        self.inbox = self.ctx.socket(zmq.PAIR)
        self.inbox.bind(f"inproc://worker-{id(self)}")
        self.worker = threading.Thread(target=self._work, name="layeringdiff-worker", daemon=True)
        self.worker.start()
        if HAS_TCP_INFO:
            self.watch = InflightWatch(self.conns, self.limits.hard_message, self.limits.max_memory, self.cut_frames,
                                       self.stopping, self.rss, self._held, lambda: self.current is not None)
            self.watch.start()
        soft, in_use = open_files()
        if soft:
            self.max_connections = connection_cap(soft, in_use, self.limits.connections)
        self.idle_rss = self.rss()
        log.info("limits: %s%s", self.limits.describe(),
                 f" (at most {self.max_connections} under the open-files limit of {soft})"
                 if self.max_connections < self.limits.connections else "")
        return self.endpoint

    def run(self) -> int:
        """Bind, print the READY line, serve until SIGINT/SIGTERM or stop(). Returns an exit code."""
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.raiseExceptions = False  # a closed stderr must not stop the server
        raise_open_files()
        try:
            self.bind()
        except zmq.ZMQError as exc:
            print(f"error: cannot listen on {self.config.host}:{self.config.port}: {exc}", file=sys.stderr)
            self.close()
            return 1
        except (OSError, ValueError, RuntimeError) as exc:  # keys missing or unreadable, or exposed without keys
            print(f"error: {exc}", file=sys.stderr)
            self.close()
            return 2
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self.stopping.set())
        key = f" server_key={self.public_key}" if self.public_key else ""
        _say(f"READY {self.endpoint} protocol={PROTOCOL_VERSION} version={__version__}{key}")
        try:
            self.loop()
        finally:
            self.close()
        _say("STOPPED")
        if self.worker is not None and self.worker.is_alive():
            # a job step that cannot be interrupted still runs: leave without it rather than wait for it
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(0)
        return 0

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        self.stopping.set()  # the in-flight watch too
        with self.ready:  # queued jobs are answered below with those the worker does not finish in time
            self.closing = True
            self.pending.clear()
            self.ready.notify_all()
        for job in list(self.jobs.values()):
            job.stop(ErrorCode.SHUTTING_DOWN, "the backend is shutting down")
        if self.worker is not None:
            deadline = time.monotonic() + SHUTDOWN_JOIN_S
            while self.worker.is_alive() and time.monotonic() < deadline:
                self.worker.join(0.05)
                if self.inbox is not None:
                    self._drain_inbox()  # the worker's last replies, and room for it to send them
        if self.inbox is not None:  # None when binding failed
            self._drain_inbox()
        for job in list(self.jobs.values()):
            self._send(job.identity, Error(ErrorCode.SHUTTING_DOWN, "the backend is shutting down", job=job.id),
                       reply_to=job.id)
        self.jobs.clear()
        for identity in list(self.waiting):
            self._flush(identity)
        if self.router is not None and self.monitor is not None:
            try:
                self.router.disable_monitor()
            except zmq.ZMQError:
                pass
        for sock in (self.monitor, self.inbox, self.router):
            if sock is not None:
                sock.close(linger=LINGER_MS if sock is self.router else 0)
        if self.auth is not None:
            self.auth.stop()
        if self.worker is not None and self.worker.is_alive():
            # the running step still holds the worker's socket, and term() would wait for it; libzmq's I/O
            # threads send the last replies (shutting_down) within the router's linger meanwhile
            log.warning("the running job did not stop within %.0f s; exiting without it", SHUTDOWN_JOIN_S)
            time.sleep(LINGER_MS / 1000)
        elif self.ctx is not None:
            self.ctx.term()
        if self.watch is not None:
            self.watch.join(1.0)  # it reads through the RSS descriptor
        if self.rss is not None and (self.watch is None or not self.watch.is_alive()):
            self.rss.close()

    # ---- socket loop --------------------------------------------------------------------------
    def loop(self) -> None:
        assert self.router is not None and self.inbox is not None and self.monitor is not None
        poller = zmq.Poller()
        for sock in (self.router, self.inbox, self.monitor):
            poller.register(sock, zmq.POLLIN)
        while not self.stopping.is_set():
            now = time.monotonic()
            if now >= self.next_check:
                self.next_check = now + CHECK_S
                try:
                    self._checks(now)
                except OSError as exc:  # no descriptor left (a connection flood): the next check may do
                    self._trouble("a periodic check", exc)
                if self.stopping.is_set():
                    break
            try:
                events = dict(poller.poll(WAITING_POLL_MS if self.waiting else POLL_MS))
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EINTR:  # a signal arrived during poll
                    continue
                raise
            try:
                if self.monitor in events:
                    self._monitor_events()
                if self.inbox in events:
                    self._drain_inbox()
                if self.router in events:
                    self._receive()
                for identity in list(self.waiting):
                    self._flush(identity)
            except OSError as exc:  # no descriptor left for something (EMFILE): the loop outlives it
                self._trouble("serving", exc)

    def _checks(self, now: float) -> None:
        if self.config.parent_pid and now >= self.next_parent_check:
            self.next_parent_check = now + PARENT_CHECK_S
            if not pid_alive(self.config.parent_pid, self.started_ppid):
                log.warning("parent process %d is gone; stopping", self.config.parent_pid)
                self.stopping.set()
                return
        self._check_connections()
        if self.config.keys:
            self._check_keys()
        self._check_memory()

    def _check_connections(self) -> None:
        """Connections the in-flight watch hung up (a message over the hard limit still arriving: libzmq keeps
        an unfinished multipart message until its last frame, only the kernel's byte count shows it), and
        connections libzmq closed (missed events)."""
        while self.watch is not None and not self.watch.hung_up.empty():
            item = self.watch.hung_up.get()
            conn = item.conn
            peers = [p for p in self.peers.values() if p.fd == conn.fd and p.address == conn.address]
            who = self._label(peers[0]) if peers else conn.address
            if item.why == "frames":
                log.warning("closed the connection from %s: at least %d frames of a message not received yet, %s on "
                            "the wire (libzmq keeps %d bytes for each until the last; a request has at most %d "
                            "frames)", who, item.frames, gib(item.buffered), FRAME_HELD, MAX_REQUEST_FRAMES)
            else:
                log.warning("closed the connection from %s: %s of a message not received yet (the limit is %s, the "
                            "memory budget %s)", who, gib(item.held), gib(self.limits.hard_message),
                            gib(self.limits.max_memory))
            for peer in peers:
                self._cut(peer, "it sent a message over the size limit", quiet=True)
            release_memory()
        for fd in list(self.conns.by_fd):
            self.conns.still_open(fd)
        now = time.monotonic()
        if self.evicted and now - self.evict_logged >= EVICT_LOG_S:
            log.info("... and closed %d more connections over the limit", self.evicted)
            self.evict_logged, self.evicted = now, 0
        busy = {job.identity for job in list(self.jobs.values())}
        for peer in list(self.peers.values()):
            conn = self.conns.by_fd.get(peer.fd) if peer.fd is not None else None
            if peer.fd is not None and (conn is None or conn.address != peer.address):
                self._gone(peer)
            elif peer.fd is None and now - peer.last_seen > IDLE_PEER_S and peer.identity not in busy \
                    and not peer.queue and peer.identity not in self.waiting:
                self.peers.pop(peer.identity, None)  # no descriptor to follow (not a TCP peer): forgotten when idle

    def _read_keys(self, strict: bool = False) -> None:
        """The allowed keys; once serving, a folder that cannot be read (no descriptor left) keeps the list
        read last."""
        assert self.config.keys is not None
        try:
            allowed = allowed_clients(self.config.keys)
        except OSError as exc:
            if strict:
                raise
            self._trouble("reading the keys folder", exc)
            return
        self.allowed = {key.decode(): name for key, name in allowed.items()}
        self.names.update(self.allowed)

    def _check_keys(self) -> None:
        """A key deleted from clients/ cuts its open connections off too, not only new ones."""
        if not any(p.key for p in self.peers.values()):
            return
        self._read_keys()
        for peer in list(self.peers.values()):
            if peer.key and peer.key not in self.allowed and not peer.cut:
                self._cut(peer, f"its key ({self.names.get(peer.key, 'unknown')}) was revoked")

    def _check_memory(self) -> None:
        assert self.rss is not None
        rss = self.rss()
        job = self.current
        if job is None and not self.pending:
            self.idle_rss = rss
        elif job is not None and rss > self.limits.max_memory and job.why is None:
            log.warning("job %s took the backend to %s, over its memory budget of %s; stopping it", job.id,
                        gib(rss), gib(self.limits.max_memory))
            job.stop(ErrorCode.TOO_LARGE, f"the job took the backend to {gib(rss)} of memory, over its budget of "
                                          f"{gib(self.limits.max_memory)} (--max-memory)")

    def _monitor_events(self) -> None:
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
                log.warning("%d connections open, the most the backend keeps: closed %d (the oldest that sent "
                            "nothing, else the newest)", self.max_connections, self.evicted)
                self.evict_logged, self.evicted = now, 0

    def _trouble(self, what: str, exc: OSError) -> None:
        """An OSError the server outlives (typically EMFILE: a connection flood holds every descriptor),
        logged once for each `what`."""
        if what not in self.troubles:
            self.troubles.add(what)
            log.warning("%s failed: %s; the backend goes on serving (logged once)", what, exc)

    def _held(self) -> int:
        """Bytes of received messages and replies the loop holds (for the in-flight watch's thread, which
        charges memory beyond them and the unreceived bytes to unfinished messages)."""
        held = self.in_hand
        for peer in list(self.peers.values()):
            held += peer.queued_bytes + peer.sending_bytes
        for job in list(self.jobs.values()):
            held += job.input_bytes
        return held

    # ---- receiving ----------------------------------------------------------------------------
    def _receive(self) -> None:
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
        self._cut(peer, f"it sent a message of more than {self.cut_frames} frames (a request has at most "
                        f"{MAX_REQUEST_FRAMES})", quiet=watched)
        self.draining = Draining(peer, count, total)

    def _drain(self, budget: int) -> int:
        """Up to `budget` more frames of the message being drained, dropped as they come; returns what is left
        of the budget."""
        assert self.router is not None and self.draining is not None
        recv = self.router.recv
        frames = size = 0
        more = True
        while more and frames < budget:
            frame = recv(copy=False)
            more = frame.more
            frames += 1
            size += len(frame)
        drain = self.draining
        drain.frames += frames
        drain.nbytes += size
        self._account(drain.peer, size + frames * wire_bytes(0, self.curve))  # the fewest wire bytes
        if not more:
            self.draining = None
            log.info("dropped the %d frames (%s) of the message from %s", drain.frames, gib(drain.nbytes),
                     self._label(drain.peer))
            release_memory()
        return budget - frames

    def _account(self, peer: Peer, wire: int) -> None:
        """Count what the loop received from this peer's connection (the in-flight watch compares it with the
        kernel's count)."""
        if peer.fd is not None:
            conn = self.conns.received(peer.fd, wire)
            if peer.address is None:
                peer.address = conn.address

    def _peer(self, identity: bytes, frame: Any) -> Peer:
        peer = self.peers.get(identity)
        if peer is None:
            fd = _frame_property(frame, zmq.SRCFD)
            key = _frame_property(frame, "User-Id") if self.auth is not None else None
            peer = Peer(identity, fd if isinstance(fd, int) and fd >= 0 else None, key or "")
            self.peers[identity] = peer
        peer.last_seen = time.monotonic()
        return peer

    def _message(self, identity: bytes, frames: list[Any], count: int, total: int, wire: int) -> None:
        peer = self._peer(identity, frames[0])
        self._account(peer, wire)
        if peer.cut:
            return
        if self.config.keys and peer.key not in self.allowed:
            self._read_keys()  # a key added after the last look is fine; one deleted is cut off at once
            if peer.key not in self.allowed:
                self._cut(peer, "its key is not (or no longer) allowed")
                return
        buffers = [f.buffer for f in frames]
        msg_id = None
        try:
            if count > MAX_REQUEST_FRAMES or total > self.limits.max_message:
                self._oversized(buffers[0], count, total)
            envelope = decode(buffers, self.limits.max_pixels)
            msg_id = envelope.id
            self._dispatch(peer, envelope.id, envelope.message, total)
        except ProtocolError as exc:
            msg_id = msg_id or (peek_id(buffers) if count else None)
            self._rejected(peer, f"{exc.code}: {exc.text}")
            self._send(identity, Error(exc.code, exc.text, exc.detail,
                                       job=msg_id if exc.code in JOB_REFUSALS else None),
                       reply_to=msg_id)
        except Exception:  # one bad request never stops the loop
            incident = self._incident("handling a message")
            self._send(identity, Error(ErrorCode.INTERNAL, f"internal error (log id {incident}): the backend's log "
                                                           "has the details"), reply_to=msg_id)

    def _oversized(self, header: Any, count: int, total: int) -> None:
        """Refuse a message over the frame or byte limit, naming what is wrong in its header first."""
        _, images = check_header(header, self.limits.max_pixels)
        if count > MAX_REQUEST_FRAMES:
            raise ProtocolError(ErrorCode.FRAME_MISMATCH, f"message has {count} frames, a request has at most "
                                                          f"{MAX_REQUEST_FRAMES} (its header describes {images} "
                                                          "image frames)")
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message of {total} bytes, more than the backend's limit of "
                                                 f"{self.limits.max_message} bytes",
                            "send a smaller layer, or raise the backend's --max-message")

    def _incident(self, what: str) -> str:
        incident = uuid.uuid4().hex[:8]
        log.exception("internal error %s %s", incident, what)
        return incident

    def _rejected(self, peer: Peer, text: str) -> None:
        """Log a refused message: cut short, and at most LOG_BURST lines a second (a fuzzing client would
        otherwise fill the disk)."""
        second = int(time.monotonic())
        if second != self.log_second:
            if self.log_skipped:
                log.info("... and %d more rejected messages", self.log_skipped)
            self.log_second, self.log_count, self.log_skipped = second, 0, 0
        self.log_count += 1
        if self.log_count <= LOG_BURST:
            log.info("rejected a message from %s: %s", self._label(peer), clip(text, LOG_CHARS))
        else:
            self.log_skipped += 1

    def _label(self, peer: Peer) -> str:
        if peer.key:
            return f"client {self.names.get(peer.key, peer.key[:8])}"
        return f"client {peer.identity.hex()[:10]}"

    def _dispatch(self, peer: Peer, msg_id: str, message: Any, nbytes: int) -> None:
        identity = peer.identity
        if isinstance(message, Hello):
            models = {row["model"]: row["state"] for row in self.models.status()}
            caps = Capabilities(f"{SERVER_NAME} {__version__}", PROTOCOL_VERSION, available_jobs(),
                                self.limits.max_pixels, models)
            self._send(identity, caps, reply_to=msg_id)
        elif isinstance(message, Ping):
            self._send(identity, Pong(message.time, self.current is not None), reply_to=msg_id)
        elif isinstance(message, Status):
            # a shared (studio) server names only the asker's own job; others count as busy and queued
            current = self.current
            mine = current is not None and current.identity == identity
            self._send(identity, StatusReply(current is not None, current.id if mine else None,
                                             current.stage if mine else None,
                                             max(0, len(self.jobs) - (current is not None))), reply_to=msg_id)
        elif isinstance(message, Echo):
            self._send(identity, EchoReply(message.image), reply_to=msg_id)
        elif isinstance(message, Cancel):
            self._cancel(identity, msg_id, message.job)
        elif type(message).TYPE in JOB_TYPES:
            try:  # what the request alone shows is refused now, before `accepted` (PROTOCOL.md)
                check_request(message)
            except InputError as exc:
                raise ProtocolError(ErrorCode.BAD_INPUT, exc.text, exc.detail) from None
            job = Job(msg_id, identity, message, owner=peer.key or identity.hex(), input_bytes=nbytes)
            self._admit(job)
            self.jobs[(identity, msg_id)] = job
            with self.ready:
                ahead = len(self.pending) + (self.current is not None)
                self.pending.append(job)
                self.ready.notify()
            # before the worker's first progress: the loop forwards that only after this turn
            self._send(identity, Accepted(msg_id, ahead), reply_to=msg_id)
        else:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"'{type(message).TYPE}' is a reply, not a request")

    def _admit(self, job: Job) -> None:
        """Queue limits and a first memory check (the pixels alone; the full estimate when it starts). A
        cancelled job counts no more (a running one may take a while to reach its next step)."""
        if (job.identity, job.id) in self.jobs:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"job id {clip(job.id, 40)} is already in use")
        jobs = [j for j in self.jobs.values() if not j.cancel.is_set()]
        mine = sum(1 for j in jobs if j.owner == job.owner)
        if mine >= self.limits.client_jobs:
            raise ProtocolError(ErrorCode.BUSY, f"this client has {mine} jobs queued or running, the limit is "
                                                f"{self.limits.client_jobs}", "wait for one to finish, or cancel one")
        if len(jobs) >= self.limits.jobs:
            raise ProtocolError(ErrorCode.BUSY, f"the backend has {len(jobs)} jobs queued or running, the limit is "
                                                f"{self.limits.jobs}", "try again in a while")
        with self.ready:
            queued = sum(j.input_bytes for j in self.pending if not j.cancel.is_set()) + job.input_bytes
        if queued > self.limits.queued_input:
            raise ProtocolError(ErrorCode.BUSY, f"the queued jobs' images would take {gib(queued)}, more than the "
                                                f"backend's limit of {gib(self.limits.queued_input)}",
                                "try again when the queue is shorter")
        estimate = estimate_job(job.message, weights=lambda name: 0, on_gpu=True)  # the least it can need
        if estimate.nbytes > self.limits.max_memory - self.idle_rss:
            raise self._too_large(estimate.what, estimate.nbytes, self.idle_rss)

    def _too_large(self, what: str, need: int, in_use: int) -> ProtocolError:
        return ProtocolError(ErrorCode.TOO_LARGE,
                             f"{what} needs about {gib(need)} of memory; the backend's budget is "
                             f"{gib(self.limits.max_memory)} (--max-memory), {gib(in_use)} of it in use",
                             "split a smaller layer or a selection of it, or raise the backend's --max-memory")

    def _cancel(self, identity: bytes, msg_id: str, job_id: str) -> None:
        job = self.jobs.get((identity, job_id))  # only the client that sent a job may cancel it, or learn it exists
        if job is None:
            self._send(identity, Error(ErrorCode.UNKNOWN_JOB, f"no queued or running job {clip(job_id, 40)}",
                                       job=job_id), reply_to=msg_id)
            return
        job.cancel.set()
        if self._withdraw(job):
            self._send(identity, Cancelled(job.id), reply_to=job.id)
        # else it runs: the worker answers `cancelled` at its next step

    def _withdraw(self, job: Job) -> bool:
        """Take a job the worker has not started off the queue, forgetting it and its images at once; False
        when the worker has taken it already."""
        with self.ready:
            try:
                self.pending.remove(job)
            except ValueError:
                return False
        self.jobs.pop((job.identity, job.id), None)
        job.message = None
        return True

    # ---- sending ------------------------------------------------------------------------------
    def _send(self, identity: bytes, message: Any, reply_to: str | None = None) -> None:
        try:
            frames = encode(bounded(message), reply_to=reply_to)
        except ProtocolError as exc:  # a reply over the header limit: say so instead
            incident = self._incident(f"encoding a {type(message).__name__}")
            frames = encode(Error(exc.code, f"internal error (log id {incident}): {exc.text}"), reply_to=reply_to)
        self._forward(identity, frames)

    def _forward(self, identity: bytes, frames: list[Any]) -> None:
        """Queue a reply for its client and send what its pipe takes, without ever blocking."""
        peer = self.peers.get(identity)
        if peer is None or peer.cut:  # the client is gone or cut off: nothing more goes to it
            return
        nbytes = sum(memoryview(f).nbytes for f in frames)
        peer.queue.append(Outgoing(frames, nbytes))
        peer.queued_bytes += nbytes
        self._flush(identity)
        messages, backlog = peer.backlog()
        if messages > self.limits.client_backlog_messages or backlog > self.limits.client_backlog_bytes:
            self._cut(peer, f"it does not read its replies ({messages} messages, {gib(backlog)} waiting)")

    def _flush(self, identity: bytes) -> None:
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
                log.info("%s unreachable (%s); cancelling its jobs", self._label(peer), exc)
                self._gone(peer)
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

    def _cut(self, peer: Peer, why: str, quiet: bool = False) -> None:
        """This client gets nothing more: its replies are dropped, its jobs cancelled, its connection closed."""
        if peer.cut:
            return
        peer.cut = why
        peer.drop()
        self.waiting.discard(peer.identity)
        for job in list(self.jobs.values()):
            if job.identity == peer.identity:
                job.stop(ErrorCode.SHUTTING_DOWN, "cut off")
                self._withdraw(job)
        closed = peer.fd is not None and hang_up(peer.fd, peer.address)
        conn = self.conns.by_fd.get(peer.fd) if closed and peer.fd is not None else None
        if conn is not None and conn.address == peer.address:
            conn.closing = True  # the in-flight watch leaves it be (and does not log it again)
        release_memory()
        if not quiet:
            log.warning("cut off %s: %s; its replies are dropped, its jobs cancelled%s", self._label(peer), why,
                        ", its connection closed" if closed else "")

    def _gone(self, peer: Peer) -> None:
        for job in list(self.jobs.values()):
            if job.identity == peer.identity:
                job.cancel.set()
                self._withdraw(job)
        peer.drop()
        self.waiting.discard(peer.identity)
        self.peers.pop(peer.identity, None)

    def _drain_inbox(self) -> None:
        """The worker's replies: [client, job id if it is the job's last reply else b"", *message]."""
        assert self.inbox is not None
        while True:
            try:
                frames = self.inbox.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            identity, last = frames[0].bytes, frames[1].bytes
            self._forward(identity, [f.buffer for f in frames[2:]])
            if last:  # the id is free again from the moment its last reply is on its way, not before
                self.jobs.pop((identity, last.decode()), None)

    # ---- worker -------------------------------------------------------------------------------
    def _work(self) -> None:
        assert self.ctx is not None
        out = self.ctx.socket(zmq.PAIR)
        out.connect(f"inproc://worker-{id(self)}")
        try:
            while True:
                with self.ready:
                    while not self.pending and not self.closing:
                        self.ready.wait()
                    if self.closing:
                        return
                    job = self.pending.popleft()
                    self.current = job
                try:
                    self._run(job, out)
                finally:
                    self.current = None
                    job.message = None  # its images, freed now rather than when the loop forgets the job
                    release_memory()
        finally:
            out.close(linger=1000)

    def _run(self, job: Job, out: zmq.Socket) -> None:
        def send(message: Any) -> None:
            last = job.id.encode() if isinstance(message, (Result, Error, Cancelled)) else b""
            out.send_multipart([job.identity, last, *encode(bounded(message), reply_to=job.id)], copy=False)

        last = [0.0, ""]

        def progress(stage: str, fraction: float) -> None:
            if job.cancel.is_set():
                raise JobCancelled()
            job.stage = stage
            now = time.monotonic()
            if stage != last[1] or now - last[0] >= PROGRESS_MIN_INTERVAL_S or fraction >= 1.0:
                last[0], last[1] = now, stage
                send(Progress(job.id, stage, float(fraction)))

        try:
            progress("start", 0.0)
            self._check_room(job)
            output = run_job(job.message, progress, self.models)
            if job.cancel.is_set():
                raise JobCancelled()
            send(Result(job.id, output.foreground, output.background, output.alpha, output.info, output.behind))
        except JobCancelled:
            send(Error(*job.why, job=job.id) if job.why else Cancelled(job.id))
        except ProtocolError as exc:
            send(Error(exc.code, exc.text, exc.detail, job=job.id))
        except InputError as exc:
            send(Error(ErrorCode.BAD_INPUT, exc.text, exc.detail, job=job.id))
        except NotAvailable as exc:
            send(Error(ErrorCode.NOT_AVAILABLE, exc.text, exc.detail, job=job.id))
        except ModuleNotFoundError as exc:
            module = missing_ml_module(exc)
            if module is None:
                incident = self._incident(f"in job {job.id}")
                send(Error(ErrorCode.INTERNAL, f"internal error (log id {incident}): a module is missing: {exc.name}",
                           job=job.id))
            else:
                send(Error(ErrorCode.NOT_AVAILABLE, f"this job needs {module}, which is not installed with the "
                                                    "backend (the ml extra)", ML_HINT, job=job.id))
        except MemoryError:
            send(Error(ErrorCode.TOO_LARGE, "the backend ran out of memory: try a smaller layer", job=job.id))
        except Exception:
            incident = self._incident(f"in job {job.id}")
            send(Error(ErrorCode.INTERNAL, f"internal error (log id {incident}): the backend's log has the details",
                       job=job.id))

    def _check_room(self, job: Job) -> None:
        """The full estimate (models not loaded yet included) against what the budget leaves now."""
        message = job.message
        names = models_needed(message)
        if names:  # a job that cannot run says why (not_available) before whether it would fit
            self.models.require(names)
        # only models that can use a GPU ask for one (that imports torch into the server)
        on_gpu = any(not REGISTRY[n].on_cpu for n in names) and self.models.accelerated()
        estimate = estimate_job(message, weight_bytes(self.models), on_gpu)
        assert self.rss is not None
        rss = self.rss()
        if estimate.nbytes > self.limits.max_memory - rss:
            raise self._too_large(estimate.what, estimate.nbytes, rss)

