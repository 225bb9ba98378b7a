"""The backend server: the loop thread owns the sockets (transport.py), the queue (jobs.py) and the peers; jobs
run in worker processes (workers.py), so the loop answers pings, status and cancels whatever a job is doing, and
stops within 2 s.

Every failure becomes an error reply (a traceback goes to the log under an id that the reply names, never into
the reply) and the loop keeps serving. An id is taken from `accepted` until the job's last reply (result, error
or cancelled) is forwarded, by the loop thread, which alone keeps `jobs`. A queued job that is cancelled leaves
the queue at once (answered `cancelled` then); a running one stops at its next step, or its worker is killed
within a second, and stops counting toward the limits at once.
"""

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
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
    ProtocolError,
    Status,
    StatusReply,
    check_header,
    clip,
    decode,
    peek_id,
)
from layering_protocol.version import SERVER_NAME

from .. import __version__
from ..errors import InputError
from ..job_memory import models_needed
from ..keys import is_loopback
from ..limits import Limits
from ..models import ModelConfig, ModelManager
from ..peers import Peer
from ..pipeline import available_jobs, check_request
from ..replies import incident_logger, to_reply
from .files import raise_open_files
from .jobs import Job, JobQueue, admit
from .transport import Transport
from .worker import RUNNER, WorkerSpec

log = logging.getLogger("layeringdiff.server")

POLL_MS = 100
WAITING_POLL_MS = 5  # while replies wait for room in some client's pipe
CHECK_S = 0.25  # connections, keys, memory, parent
FREEING_S = 5.0  # replies of clients cut off, freed as libzmq drops their connections (ms; a loaded machine)
PARENT_CHECK_S = 1.0
SHUTDOWN_JOIN_S = 0.75  # running jobs get this long to stop when the server stops; then their workers are killed
# refusals of a job request before `accepted` name the job (its id), so a client can tell which request it was
JOB_REFUSALS = (ErrorCode.BUSY, ErrorCode.TOO_LARGE, ErrorCode.BAD_INPUT)


def pid_alive(pid: int, started_ppid: int) -> bool:
    """psutil, not os.kill(pid, 0): on Windows that call would terminate the process. A dead parent
    that nobody reaped still "exists" as a zombie, but we have been re-parented away from it."""
    if pid == started_ppid and os.getppid() != started_ppid:
        return False
    return psutil.pid_exists(pid)


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
    max_job_seconds: float = 0.0  # how long one job may run; 0: no limit
    devices: tuple[str, ...] = ()  # one worker process per device (cuda:0, cuda:1, mps, cpu)
    workers: int = 0  # CPU worker processes besides; 0: one when no device is named
    job_runner: str = RUNNER  # "module:function" that runs a job in the workers (tests give their own)

    def limits(self) -> Limits:
        given = {k: v for k, v in (("client_jobs", self.max_client_jobs), ("jobs", self.max_jobs),
                                   ("client_backlog", self.client_backlog),
                                   ("job_seconds", self.max_job_seconds)) if v}
        return Limits.make(self.max_pixels, self.max_memory, self.max_message, **given)

    def worker_specs(self) -> list[WorkerSpec]:
        """One worker per device, then the CPU workers. Each CPU worker gets its share of the cores in threads: more
        only spin against the other workers' jobs (two workers on two cores: 58 jobs/min of 1024^2 splits with one
        thread each, 40-44 with two; one worker alone gains nothing from a second thread on them;
        benchmarks/bench_workers.py)."""
        cpu = self.workers or (0 if self.devices else 1)
        devices = [*self.devices, *(["cpu" if self.devices else self.models.device] * cpu)]
        on_cpu = sum(1 for d in devices if d in ("cpu", "auto")) or 1
        cores = os.cpu_count() or 1
        threads = max(1, cores // on_cpu)
        return [WorkerSpec(i, replace(self.models, device=d), threads, self.max_pixels, self.job_runner)
                for i, d in enumerate(devices)]


class Server:
    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.limits = self.config.limits()
        self.stopping = threading.Event()
        self.transport = Transport(self, self.limits, self.config.keys, self.stopping)
        self.queue = JobQueue()
        self.jobs: dict[tuple[bytes, str], Job] = {}  # queued or running, by (client, id); the loop thread's alone
        self.models = ModelManager(self.config.models)  # for status and estimates: the workers load their own
        self.pool: Any = None
        self.inbox: zmq.Socket | None = None
        self.started_ppid = os.getppid()
        self.idle_rss = 0
        self.idle_held = 0
        self.next_check = 0.0
        self.next_parent_check = 0.0

    @property
    def endpoint(self) -> str:
        return self.transport.endpoint

    # ---- set-up and tear-down -------------------------------------------------------------
    def bind(self) -> str:
        if not self.config.keys and not is_loopback(self.config.host):
            raise ValueError(f"serving on {self.config.host} would let anyone who can reach it run jobs: create keys "
                             "with `layeringdiff keys init DIR` and serve with --keys DIR")
        from .workers import Pool

        endpoint = self.transport.bind(self.config.host, self.config.port)
        assert self.transport.ctx is not None and self.transport.rss is not None
        self.inbox = self.transport.ctx.socket(zmq.PULL)
        self.inbox.bind(f"inproc://replies-{id(self)}")
        self.pool = Pool(self.config.worker_specs(), self.queue, self.limits, self.models, self.transport.ctx,
                         f"inproc://replies-{id(self)}", self.transport.rss)
        self.pool.start()  # they import and get ready while the server already answers
        self.idle_rss = self.transport.rss()
        log.info("%d worker%s: %s", len(self.pool.workers), "s" * (len(self.pool.workers) > 1),
                 ", ".join(f"{w.spec.models.device} ({w.spec.threads} threads)" for w in self.pool.workers))
        return endpoint

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
        key = f" server_key={self.transport.public_key}" if self.transport.public_key else ""
        _say(f"READY {self.endpoint} protocol={PROTOCOL_VERSION} version={__version__}{key}")
        try:
            self.loop()
        finally:
            self.close()
        _say("STOPPED")
        return 0

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        """Queued jobs are answered `shutting_down` at once; running ones get SHUTDOWN_JOIN_S to stop, then their
        workers are killed and they are answered too."""
        self.stopping.set()  # the in-flight watch too
        for job in self.queue.close():
            job.stop(ErrorCode.SHUTTING_DOWN, "the backend is shutting down")
        for job in list(self.jobs.values()):
            job.stop(ErrorCode.SHUTTING_DOWN, "the backend is shutting down")
        if self.pool is not None:
            deadline = time.monotonic() + SHUTDOWN_JOIN_S
            while any(w.thread.is_alive() for w in self.pool.workers) and time.monotonic() < deadline:
                time.sleep(0.02)
                self._drain_inbox()  # their last replies
            self.pool.stop(max(0.0, deadline - time.monotonic()))
        if self.inbox is not None:  # None when binding failed
            self._drain_inbox()
        for job in list(self.jobs.values()):
            self.transport.send(job.identity, Error(ErrorCode.SHUTTING_DOWN, "the backend is shutting down",
                                                    job=job.id), reply_to=job.id)
        self.jobs.clear()
        held = self.pool is not None and any(w.thread.is_alive() for w in self.pool.workers)
        if held:
            log.warning("a worker's thread did not end; exiting without waiting for it")
        self.transport.close([self.inbox] if self.inbox is not None else [], term=not held)

    # ---- the loop ----------------------------------------------------------------------------
    def loop(self) -> None:
        transport = self.transport
        assert transport.router is not None and self.inbox is not None and transport.monitor is not None
        poller = zmq.Poller()
        for sock in (transport.router, self.inbox, transport.monitor):
            poller.register(sock, zmq.POLLIN)
        while not self.stopping.is_set():
            now = time.monotonic()
            if now >= self.next_check:
                self.next_check = now + CHECK_S
                try:
                    self._checks(now)
                except OSError as exc:  # no descriptor left (a connection flood): the next check may do
                    transport.trouble("a periodic check", exc)
                if self.stopping.is_set():
                    break
            try:
                events = dict(poller.poll(WAITING_POLL_MS if transport.waiting else POLL_MS))
            except zmq.ZMQError as exc:
                if exc.errno == zmq.EINTR:  # a signal arrived during poll
                    continue
                raise
            try:
                if transport.monitor in events:
                    transport.monitor_events()
                if self.inbox in events:
                    self._drain_inbox()
                if transport.router in events:
                    transport.receive()
                for identity in list(transport.waiting):
                    transport.flush(identity)
            except OSError as exc:  # no descriptor left for something (EMFILE): the loop outlives it
                transport.trouble("serving", exc)

    def _checks(self, now: float) -> None:
        if self.config.parent_pid and now >= self.next_parent_check:
            self.next_parent_check = now + PARENT_CHECK_S
            if not pid_alive(self.config.parent_pid, self.started_ppid):
                log.warning("parent process %d is gone; stopping", self.config.parent_pid)
                self.stopping.set()
                return
        self.transport.check_connections({job.identity for job in list(self.jobs.values())})
        if self.config.keys:
            self.transport.check_keys()
        assert self.transport.rss is not None
        if not self.jobs:
            self.idle_rss = self.transport.rss()
            self.idle_held = self.transport.held()  # replies among it (what freeing stalled ones can give back)
        else:  # with jobs, only what has gone since (their images apart, which admission counts on their own):
            # a moment of held replies stayed counted for as long as one client kept a small job queued, and
            # everyone's larger jobs were refused too_large; a rise (results on their way out) waits for the idle
            now_rss = self.transport.rss() - sum(job.input_bytes for job in self.jobs.values())
            if now_rss < self.idle_rss:
                self.idle_rss = max(0, now_rss)
                self.idle_held = min(self.idle_held, self.transport.held())

    def _drain_inbox(self) -> None:
        """The workers' replies: [client, job id if it is the job's last reply else b"", *message]."""
        assert self.inbox is not None
        while True:
            try:
                frames = self.inbox.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            identity, last = frames[0].bytes, frames[1].bytes
            self.transport.forward(identity, [f.buffer for f in frames[2:]])
            if last:  # the id is free again from the moment its last reply is on its way, not before
                self.jobs.pop((identity, last.decode()), None)

    # ---- what the transport asks of us -----------------------------------------------------------
    def busy(self) -> bool:
        """Jobs run in the workers; only a request or result passing through is a job's memory here."""
        return self.pool is not None and self.pool.transferring()

    def held_by_jobs(self) -> int:
        return sum(job.input_bytes for job in list(self.jobs.values()))

    def on_leave(self, identity: bytes, cut: bool) -> None:
        """A client cut off or gone: its jobs are pointless now."""
        for job in list(self.jobs.values()):
            if job.identity == identity:
                if cut:
                    job.stop(ErrorCode.SHUTTING_DOWN, "cut off")
                else:
                    job.cancel.set()
                self._withdraw(job)

    def on_message(self, peer: Peer, buffers: list[Any], count: int, total: int) -> None:
        msg_id = None
        try:
            if count > MAX_REQUEST_FRAMES or total > self.limits.max_message:
                self._oversized(buffers[0], count, total)
            envelope = decode(buffers, self.limits.max_pixels, requests_only=True)
            msg_id = envelope.id
            self._dispatch(peer, envelope.id, envelope.message, buffers, total)
        except ProtocolError as exc:
            msg_id = msg_id or (peek_id(buffers) if count else None)
            self.transport.rejected(peer, f"{exc.code}: {exc.text}")
            self.transport.send(peer.identity, Error(exc.code, exc.text, exc.detail,
                                                     job=msg_id if exc.code in JOB_REFUSALS else None),
                                reply_to=msg_id)
        except Exception as exc:  # one bad request never stops the loop
            failure = to_reply(exc, incident_logger(log, "handling a message"))
            self.transport.send(peer.identity, failure.error(), reply_to=msg_id)

    def _oversized(self, header: Any, count: int, total: int) -> None:
        """Refuse a message over the frame or byte limit, naming what is wrong in its header first."""
        _, images = check_header(header, self.limits.max_pixels, requests_only=True)
        if count > MAX_REQUEST_FRAMES:
            raise ProtocolError(ErrorCode.FRAME_MISMATCH, f"message has {count} frames, a request has at most "
                                                          f"{MAX_REQUEST_FRAMES} (its header describes {images} "
                                                          "image frames)")
        raise ProtocolError(ErrorCode.TOO_LARGE, f"message of {total} bytes, more than the backend's limit of "
                                                 f"{self.limits.max_message} bytes",
                            "send a smaller layer, or raise the backend's --max-message")

    def _dispatch(self, peer: Peer, msg_id: str, message: Any, buffers: list[Any], nbytes: int) -> None:
        identity, send = peer.identity, self.transport.send
        if isinstance(message, Hello):
            models = {row["model"]: row["state"] for row in self.models.status()}
            caps = Capabilities(f"{SERVER_NAME} {__version__}", PROTOCOL_VERSION, available_jobs(),
                                self.limits.max_pixels, models)
            send(identity, caps, reply_to=msg_id)
        elif isinstance(message, Ping):
            send(identity, Pong(message.time, bool(self.queue.running)), reply_to=msg_id)
        elif isinstance(message, Status):
            # a shared (studio) server names only the asker's own job; others count as busy and queued
            running = list(self.queue.running)
            mine = next((job for job in running if job.identity == identity), None)
            send(identity, StatusReply(bool(running), mine.id if mine else None, mine.stage if mine else None,
                                       max(0, len(self.jobs) - len(running))), reply_to=msg_id)
        elif isinstance(message, Echo):
            send(identity, EchoReply(message.image), reply_to=msg_id)
        elif isinstance(message, Cancel):
            self._cancel(identity, msg_id, message.job)
        elif type(message).TYPE in JOB_TYPES:
            try:  # what the request alone shows is refused now, before `accepted` (PROTOCOL.md)
                check_request(message)
            except InputError as exc:
                raise ProtocolError(ErrorCode.BAD_INPUT, exc.text, exc.detail) from None
            job = Job(msg_id, identity, message, list(buffers), owner=peer.key or identity.hex(), input_bytes=nbytes,
                      models=tuple(models_needed(message)))
            try:
                admit(job, self.jobs, self.queue.queued(), self.limits, self._in_use())
            except ProtocolError as exc:
                if exc.code != ErrorCode.TOO_LARGE or not self._room_from_stalled(job, peer):
                    raise
            self.jobs[(identity, msg_id)] = job
            position = self.queue.put(job, len(self.pool.workers) if self.pool is not None else 1)
            # before the worker's first progress: the loop forwards that only after this turn
            send(identity, Accepted(msg_id, position), reply_to=msg_id)
        else:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"'{type(message).TYPE}' is a reply, not a request")

    def _room_from_stalled(self, job: Job, peer: Peer) -> bool:
        """Replies that clients have stopped taking (Transport.stalled) hold memory a job needs: where freeing
        them makes the job fit, those clients are cut off and the job admitted (True). Only what the idle memory
        counted of replies is taken off it (their memory is looked at again once the server idles)."""
        stalled = [p for p in self.transport.stalled() if p is not peer]
        freeable = min(sum(p.pending() for p in stalled), self.idle_held)
        if not freeable:
            return False
        try:
            admit(job, self.jobs, self.queue.queued(), self.limits, self._in_use() - freeable)
        except ProtocolError:
            return False  # too large even so: nobody is cut off for nothing
        self.transport.cut_stalled(stalled, time.monotonic())
        self.idle_rss = max(0, self.idle_rss - freeable)
        self.idle_held -= freeable
        job.room_by = time.monotonic() + FREEING_S  # the worker waits that long for the memory to come back
        return True

    def _in_use(self) -> int:
        """What the backend holds besides a new job: the server's memory when idle and its idle workers'."""
        return self.idle_rss + (self.pool.idle_memory() if self.pool is not None else 0)

    def _cancel(self, identity: bytes, msg_id: str, job_id: str) -> None:
        job = self.jobs.get((identity, job_id))  # only the client that sent a job may cancel it, or learn it exists
        if job is None:
            self.transport.send(identity, Error(ErrorCode.UNKNOWN_JOB, f"no queued or running job {clip(job_id, 40)}",
                                                job=job_id), reply_to=msg_id)
            return
        job.cancel.set()
        if self._withdraw(job):
            self.transport.send(identity, Cancelled(job.id), reply_to=job.id)
        # else it runs: its worker answers `cancelled` at its next step, or is killed and answered for

    def _withdraw(self, job: Job) -> bool:
        """Take a job no worker has started off the queue, forgetting it and its images at once; False when a
        worker has taken it already."""
        if not self.queue.withdraw(job):
            return False
        self.jobs.pop((job.identity, job.id), None)
        job.drop()
        return True
