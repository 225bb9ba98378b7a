"""Backend server: a ZeroMQ ROUTER socket loop that stays responsive, and one worker thread for jobs.

Only the loop thread touches the ROUTER socket. The worker sends its replies through an inproc PAIR
socket, and the loop forwards them. Jobs run one at a time; cancel, ping and status are answered
while a job runs; every failure becomes an error reply and the loop keeps serving.
"""

import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import psutil
import zmq
from layering_protocol import (
    DEFAULT_MAX_PIXELS,
    JOB_TYPES,
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
    decode,
    encode,
    peek_id,
)

from . import __version__
from .errors import InputError, JobCancelled, NotAvailable
from .keys import ClientList, is_loopback, server_keys
from .models import ModelConfig, ModelManager
from .pipeline import available_jobs, run_job

log = logging.getLogger("layeringdiff.server")

HEARTBEAT_MS = 2000  # ZeroMQ transport heartbeats: a dead peer's connection is dropped after the timeout
HEARTBEAT_TIMEOUT_MS = 6000
POLL_MS = 100
IO_THREADS = 2  # a second I/O thread cuts 4096^2 transfers by ~15% on loopback
SHUTDOWN_JOIN_S = 10.0
PARENT_CHECK_S = 1.0
PROGRESS_MIN_INTERVAL_S = 0.05  # progress events are coalesced to this rate, stage changes always go


def pid_alive(pid: int, started_ppid: int) -> bool:
    """psutil, not os.kill(pid, 0): on Windows that call would terminate the process. A dead parent
    that nobody reaped still "exists" as a zombie, but we have been re-parented away from it."""
    if pid == started_ppid and os.getppid() != started_ppid:
        return False
    return psutil.pid_exists(pid)


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    parent_pid: int | None = None  # stop when this process is gone (Krita started us and crashed)
    models: ModelConfig = field(default_factory=ModelConfig)
    keys: str | None = None  # CURVE keys folder (`layeringdiff keys init`); required beyond loopback


@dataclass
class Job:
    id: str
    identity: bytes
    message: Any
    cancel: threading.Event = field(default_factory=threading.Event)
    stage: str = "queued"


class Server:
    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.ctx: zmq.Context | None = None
        self.auth: Any = None  # pyzmq's ZAP authenticator thread when serving with keys
        self.public_key = ""
        self.router: zmq.Socket | None = None
        self.inbox: zmq.Socket | None = None
        self.endpoint = ""
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.jobs: dict[str, Job] = {}  # queued or running, by id
        self.current: Job | None = None
        self.stopping = threading.Event()
        self.worker: threading.Thread | None = None
        self.started_ppid = os.getppid()
        self.models = ModelManager(self.config.models)

    # ---- set-up and tear-down -------------------------------------------------------------
    def bind(self) -> str:
        if not self.config.keys and not is_loopback(self.config.host):
            raise ValueError(f"serving on {self.config.host} would let anyone who can reach it run jobs: create keys "
                             "with `layeringdiff keys init DIR` and serve with --keys DIR")
        curve = server_keys(self.config.keys) if self.config.keys else None
        self.ctx = zmq.Context(io_threads=IO_THREADS)
        self.router = self.ctx.socket(zmq.ROUTER)
        if curve is not None:
            from zmq.auth.thread import ThreadAuthenticator

            self.auth = ThreadAuthenticator(self.ctx)
            self.auth.start()
            self.auth.configure_curve_callback(domain="*", credentials_provider=ClientList(self.config.keys))
            self.router.curve_publickey, self.router.curve_secretkey = curve
            self.router.curve_server = True
            self.public_key = curve[0].decode()
        self.router.setsockopt(zmq.LINGER, 500)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unreachable peer -> error, not silent drop
        self.router.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
        self.router.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        # bound what one message may make us allocate: the largest f32 RGBA image plus slack
        self.router.setsockopt(zmq.MAXMSGSIZE, self.config.max_pixels * 16 + (1 << 20))
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
        return self.endpoint

    def run(self) -> int:
        """Bind, print the READY line, serve until SIGINT/SIGTERM or stop(). Returns an exit code."""
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
        print(f"READY {self.endpoint} protocol={PROTOCOL_VERSION} version={__version__}{key}", flush=True)
        try:
            self.loop()
        finally:
            self.close()
        print("STOPPED", flush=True)
        return 0

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        for job in list(self.jobs.values()):
            job.cancel.set()
        self.queue.put(None)
        if self.worker is not None:
            self.worker.join(SHUTDOWN_JOIN_S)
        if self.inbox is not None:  # None when binding failed
            self._drain_inbox()
        for job in list(self.jobs.values()):
            self._send(job.identity, Error(ErrorCode.SHUTTING_DOWN, "the backend is shutting down", job=job.id),
                       reply_to=job.id)
        self.jobs.clear()
        for sock in (self.inbox, self.router):
            if sock is not None:
                sock.close()
        if self.auth is not None:
            self.auth.stop()
        if self.worker is not None and self.worker.is_alive():
            # a step that cannot be interrupted (one long model call) still holds the worker's socket, and
            # term() would wait for it: leave the context to the process exit instead of hanging here
            log.warning("the running job did not stop within %.0f s; exiting without it", SHUTDOWN_JOIN_S)
        elif self.ctx is not None:
            self.ctx.term()

    # ---- socket loop --------------------------------------------------------------------------
    def loop(self) -> None:
        assert self.router is not None and self.inbox is not None
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.inbox, zmq.POLLIN)
        next_parent_check = time.monotonic()
        while not self.stopping.is_set():
            if self.config.parent_pid and time.monotonic() >= next_parent_check:
                next_parent_check = time.monotonic() + PARENT_CHECK_S
                if not pid_alive(self.config.parent_pid, self.started_ppid):
                    log.warning("parent process %d is gone; stopping", self.config.parent_pid)
                    self.stopping.set()
                    break
            try:
                events = dict(poller.poll(POLL_MS))
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EINTR:  # a signal arrived during poll
                    continue
                raise
            if self.inbox in events:
                self._drain_inbox()
            if self.router in events:
                while True:
                    try:
                        frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._handle(frames[0].bytes, frames[1:])

    def _drain_inbox(self) -> None:
        assert self.inbox is not None
        while True:
            try:
                frames = self.inbox.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._forward(frames[0].bytes, frames[1:])

    def _forward(self, identity: bytes, frames: list[Any]) -> None:
        assert self.router is not None
        try:
            self.router.send_multipart([identity, *frames], copy=False)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the client went away; its jobs are pointless now
            log.warning("client %s unreachable (%s); cancelling its jobs", identity.hex(), exc)
            for job in self.jobs.values():
                if job.identity == identity:
                    job.cancel.set()

    def _send(self, identity: bytes, message: Any, reply_to: str | None = None) -> None:
        self._forward(identity, encode(message, reply_to=reply_to))

    def _handle(self, identity: bytes, frames: list[Any]) -> None:
        buffers = [f.buffer for f in frames]
        msg_id = None
        try:
            envelope = decode(buffers, self.config.max_pixels)
            msg_id = envelope.id
            self._dispatch(identity, envelope.id, envelope.message)
        except ProtocolError as exc:
            msg_id = msg_id or (peek_id(buffers) if buffers else None)
            log.info("rejected message from %s: %s", identity.hex(), exc)
            self._send(identity, Error(exc.code, exc.text, exc.detail), reply_to=msg_id)
        except Exception as exc:  # one bad request never stops the loop
            log.exception("failed handling a message")
            self._send(identity, Error(ErrorCode.INTERNAL, f"internal error: {exc}", traceback.format_exc()),
                       reply_to=msg_id)

    def _dispatch(self, identity: bytes, msg_id: str, message: Any) -> None:
        if isinstance(message, Hello):
            models = {row["model"]: row["state"] for row in self.models.status()}
            caps = Capabilities(f"layeringdiff {__version__}", PROTOCOL_VERSION, available_jobs(),
                                self.config.max_pixels, models)
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
            if msg_id in self.jobs:
                raise ProtocolError(ErrorCode.BAD_MESSAGE, f"job id {msg_id} is already in use")
            job = Job(msg_id, identity, message)
            self.jobs[msg_id] = job
            self._send(identity, Accepted(msg_id, self.queue.qsize() + (self.current is not None)),
                       reply_to=msg_id)
            self.queue.put(job)
        else:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"'{type(message).TYPE}' is a reply, not a request")

    def _cancel(self, identity: bytes, msg_id: str, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.identity != identity:  # only the client that sent a job may cancel it
            self._send(identity, Error(ErrorCode.UNKNOWN_JOB, f"no queued or running job {job_id}", job=job_id),
                       reply_to=msg_id)
            return
        # the worker answers `cancelled` when it reaches the job (queued) or its next step (running)
        job.cancel.set()

    # ---- worker -------------------------------------------------------------------------------
    def _work(self) -> None:
        assert self.ctx is not None
        out = self.ctx.socket(zmq.PAIR)
        out.connect(f"inproc://worker-{id(self)}")
        try:
            while True:
                job = self.queue.get()
                if job is None:
                    return
                self.current = job
                try:
                    self._run(job, out)
                finally:
                    self.current = None
                    self.jobs.pop(job.id, None)
        finally:
            out.close(linger=1000)

    def _run(self, job: Job, out: zmq.Socket) -> None:
        def send(message: Any) -> None:
            out.send_multipart([job.identity, *encode(message, reply_to=job.id)], copy=False)

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
            output = run_job(job.message, progress, self.models)
            if job.cancel.is_set():
                raise JobCancelled()
            send(Result(job.id, output.foreground, output.background, output.alpha, output.info, output.behind))
        except JobCancelled:
            send(Cancelled(job.id))
        except InputError as exc:
            send(Error(ErrorCode.BAD_INPUT, exc.text, exc.detail, job=job.id))
        except NotAvailable as exc:
            send(Error(ErrorCode.NOT_AVAILABLE, exc.text, exc.detail, job=job.id))
        except MemoryError:
            send(Error(ErrorCode.INTERNAL, "out of memory: try a smaller layer", job=job.id))
        except Exception as exc:
            log.exception("job %s failed", job.id)
            send(Error(ErrorCode.INTERNAL, f"internal error: {exc}", traceback.format_exc(), job=job.id))
