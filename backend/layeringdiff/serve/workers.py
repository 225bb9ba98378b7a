"""Worker processes and the threads in the server that feed and watch them.

Each worker runs one job at a time on its device (`--devices cuda:0,cuda:1`, or `--workers N` on the CPU),
keeping its models loaded between jobs. Its thread in the server takes the next job from the fair queue
(preferring jobs whose models it has loaded), checks the job's full memory estimate against what the budget
leaves, hands the request over, forwards progress and the result to the loop, and watches:
- cancel: the worker stops at its job's next step; one that does not confirm within CANCEL_GRACE_S (a long
  step that cannot be interrupted) is killed and restarted, and the job answered `cancelled` all the same;
- memory: a worker over its share of the budget (the budget less the server's own memory and the other
  workers', or their reservations where larger) is stopped, its true peak read, killed and restarted; the job
  is answered `too_large` with that peak, and nobody else notices;
- death: a worker that dies (a crash in a native library) is restarted and its job answered `internal`;
- time (`--max-job-seconds`): a job running longer is stopped as a cancel is, and answered `too_large`.
"""

import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import zmq
from layering_protocol import Cancelled, Error, ErrorCode, encode

from ..job_memory import estimate_job, weight_bytes
from ..limits import Limits, gib
from ..models import REGISTRY, ModelManager
from ..peers import Rss
from ..replies import bounded, incident_logger, to_reply
from .jobs import Job, JobQueue, too_large
from .worker import WorkerSpec, worker_main

log = logging.getLogger("layeringdiff.server")

TICK_S = 0.01  # how often a running worker's memory, liveness and cancel are looked at
LOOKAHEAD_BYTES = 64 << 20  # the most growth a look foresees: beyond it a job near its share is not stopped early
CANCEL_GRACE_S = 0.5  # a cancelled job that has not stopped by then has its worker killed
START_S = 120.0  # a worker that is not ready by then (imports on a slow disk) is given up and restarted
RESTART_PAUSE_S = 1.0  # between failed starts
FAILED_STARTS = 3  # in a row: the job waiting for the worker is answered instead of waiting on
LINGER_MS = 1000
TRANSFER_SETTLE_S = 0.25  # a result forwarded is in the loop's hands (counted) by then


def peak_rss(pid: int) -> int:
    """The process's highest resident memory so far (VmHWM); 0 where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) << 10
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Worker:
    """One worker process, and the thread that serves it jobs."""

    def __init__(self, pool: "Pool", spec: WorkerSpec) -> None:
        self.pool, self.spec = pool, spec
        self.name = f"worker {spec.index} ({spec.models.device})"
        self.proc: Any = None
        self.conn: Any = None
        self.cancel: Any = None
        self.rss: Rss | None = None
        self.ready = False
        self.failed_starts = 0
        self.started = 0.0
        self.idle_rss = 0
        self.reserved = 0  # the RSS its job may reach by its estimate (0 when idle)
        self.last_rss = 0  # at the last look while a job runs, and what it grew by then: how steadily it grows
        self.last_grown = 0
        self.loaded: set[str] = set()
        self.job: Job | None = None
        self.lock = threading.Lock()  # its thread and the server's stop may both end the process
        self.thread = threading.Thread(target=self._serve, name=f"layeringdiff-{self.name}", daemon=True)

    # ---- the process ---------------------------------------------------------------------
    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        conn, child = ctx.Pipe(duplex=True)
        self.cancel = ctx.Event()
        self.proc = ctx.Process(target=worker_main, args=(child, self.cancel, self.spec, os.getpid()),
                                name=f"layeringdiff-worker-{self.spec.index}", daemon=True)
        self.proc.start()
        child.close()
        self.conn, self.ready, self.started, self.loaded = conn, False, time.monotonic(), set()
        self.rss = Rss(self.proc.pid)

    def alive(self) -> bool:
        proc = self.proc
        return proc is not None and proc.is_alive()

    def kill(self) -> None:
        with self.lock:
            proc, conn, rss = self.proc, self.conn, self.rss
            self.proc = self.conn = self.rss = None
            self.ready = False
            self.loaded = set()
        if proc is None:
            return
        if proc.is_alive():
            proc.kill()
        proc.join(2.0)
        for held in (conn, rss):
            if held is not None:
                held.close()

    def memory(self) -> int:
        rss = self.rss  # once: another thread may kill this worker meanwhile (a closed reading gives its last figure)
        return rss() if rss is not None and self.alive() else 0

    def footprint(self) -> int:
        """What this worker takes of the budget: its memory, or its job's reservation where larger."""
        return max(self.memory(), self.reserved)

    def accelerated(self) -> bool:
        device = self.spec.models.device
        if device == "auto":
            return self.pool.models.accelerated()  # imports torch into the server, only for a model job
        return device != "cpu"

    def _await_ready(self, job: Job | None) -> bool:
        """Read the worker's ready line; False while it is still starting (or gave up and restarted)."""
        if self.ready:
            return True
        if self.conn is not None and self.conn.poll(TICK_S):
            try:
                kind = self.conn.recv()
            except (EOFError, OSError):
                kind = None
            if kind and kind[0] == "ready":
                self.ready, self.failed_starts = True, 0
                self.idle_rss = self.memory()
                log.info("%s ready: pid %s, %s", self.name, kind[1], gib(self.idle_rss))
                return True
        if not self.alive() or time.monotonic() - self.started > START_S:
            code = self.proc.exitcode if self.proc is not None else None
            self.failed_starts += 1
            log.error("%s did not start (exit code %s); starting another", self.name, code)
            self.kill()
            time.sleep(RESTART_PAUSE_S)
            self.start()
        return False

    # ---- the thread ------------------------------------------------------------------------
    def _serve(self) -> None:
        out = self.pool.replies_socket()
        try:
            while not self.pool.queue.closing:
                if not self.alive():
                    self.start()
                if not self._await_ready(None) and self.failed_starts < FAILED_STARTS:
                    continue  # still starting; once it has failed to start again and again, jobs are answered
                self.idle_rss = self.memory()
                job = self.pool.queue.take(self._fits, wait_s=0.25)
                if job is None:
                    continue
                self.job = job
                try:
                    self._run(job, out)
                except Exception:  # a bug here must not stop the worker's thread: the job is answered
                    failure = to_reply(RuntimeError(), incident_logger(log, f"serving job {job.id}"))
                    self._send(out, job, failure.error(job.id), last=True)
                finally:
                    self.job, self.reserved = None, 0
                    job.drop()
                    self.pool.queue.done(job)
        finally:
            out.close(linger=LINGER_MS)

    def _fits(self, job: Job) -> bool:
        """False when another free worker has the job's models loaded and this one does not."""
        if not job.models or set(job.models) <= self.loaded:
            return True
        return not any(w is not self and w.job is None and w.ready and set(job.models) <= w.loaded
                       for w in self.pool.workers)

    def _send(self, out: zmq.Socket, job: Job, message: Any, last: bool = False) -> None:
        self._forward(out, job, encode(bounded(message), reply_to=job.id), last)

    @staticmethod
    def _forward(out: zmq.Socket, job: Job, frames: list[Any], last: bool) -> None:
        out.send_multipart([job.identity, job.id.encode() if last else b"", *frames], copy=False)

    def _stopped(self, job: Job) -> Any:
        return Error(*job.why, job=job.id) if job.why else Cancelled(job.id)

    def _run(self, job: Job, out: zmq.Socket) -> None:
        while not self._await_ready(job):  # a worker restarted after the last job: wait for it
            if job.cancel.is_set():
                self._send(out, job, self._stopped(job), last=True)
                return
            if self.failed_starts >= FAILED_STARTS:
                why = f"in job {job.id}: {self.name} failed to start {self.failed_starts} times in a row (see above)"
                failure = to_reply(RuntimeError(), _logged(why))
                self._send(out, job, failure.error(job.id), last=True)
                return
        if job.cancel.is_set():
            self._send(out, job, self._stopped(job), last=True)
            return
        try:
            self._check_room(job)
        except Exception as exc:
            self._send(out, job, to_reply(exc, incident_logger(log, f"in job {job.id}")).error(job.id), last=True)
            return
        assert self.conn is not None and job.frames is not None
        self.cancel.clear()
        job.stage = "start"
        try:
            with self.pool.transfer():
                self.conn.send(("job", job.id, len(job.frames)))
                for frame in job.frames:
                    self.conn.send_bytes(frame)
        except (OSError, ValueError):
            pass  # it died meanwhile: seen below
        job.drop()  # the worker has its own copy
        self.last_rss, self.last_grown = self.memory(), 0
        self._watch(job, out)

    def _watch(self, job: Job, out: zmq.Socket) -> None:
        cancelled_at = 0.0
        limit = self.pool.limits.job_seconds
        deadline = time.monotonic() + limit if limit else float("inf")
        looked = time.monotonic()
        while True:
            try:
                if self.conn is not None and self.conn.poll(TICK_S):
                    if self._receive(job, out):
                        return
                    if time.monotonic() - looked < TICK_S:  # progress a few ms apart: the looks below still come
                        continue
            except (EOFError, OSError):
                pass  # its end of the pipe closed: it died, seen next
            looked = time.monotonic()
            if not self.alive():
                self._died(job, out)
                return
            now = time.monotonic()
            if now > deadline and not job.cancel.is_set():  # stopped as a cancel is, and answered why
                log.warning("job %s ran past the backend's limit of %g s a job; stopping it", job.id, limit)
                job.stop(ErrorCode.TOO_LARGE, f"the job ran longer than the backend's limit of {limit:g} s a job "
                                              "(--max-job-seconds): split a smaller layer or fewer objects at a "
                                              "time, or ask for a longer limit")
            if job.cancel.is_set():
                if not cancelled_at:
                    cancelled_at = now
                    self.cancel.set()
                elif now - cancelled_at > CANCEL_GRACE_S:
                    log.warning("%s did not stop job %s within %.1f s of its cancel; killing it", self.name, job.id,
                                CANCEL_GRACE_S)
                    self.kill()
                    self._send(out, job, self._stopped(job), last=True)
                    return
            if self._over_budget(job, out):
                return

    def _receive(self, job: Job, out: zmq.Socket) -> bool:
        """One message from the worker; True when it was the job's last."""
        assert self.conn is not None
        kind = self.conn.recv()
        if kind[0] == "cancelled":
            self.loaded = set(kind[1])
            self._send(out, job, self._stopped(job), last=True)
            return True
        _, last, count, extra = kind
        with self.pool.transfer():
            frames = [self.conn.recv_bytes() for _ in range(count)]
        if last:
            self.loaded = set(extra or ())
        elif extra:
            job.stage = str(extra)
        self._forward(out, job, frames, bool(last))
        return bool(last)

    def _over_budget(self, job: Job, out: zmq.Socket) -> bool:
        """Stopped before it goes over its share: when its steady growth (the smaller of its last two looks', so
        one large allocation is not taken for a trend), twice over (a look may come late on a loaded machine) and
        at most LOOKAHEAD_BYTES, would take it past the share by the next look; or once it is past it."""
        rss = self.memory()
        grown = max(0, rss - self.last_rss)
        steady = min(grown, self.last_grown)
        self.last_rss, self.last_grown = rss, grown
        share = self.pool.share(self)
        proc = self.proc
        if rss + min(2 * steady, LOOKAHEAD_BYTES) <= share or proc is None:
            return False
        pid = proc.pid
        try:
            os.kill(pid, signal.SIGSTOP)  # frozen while its peak is read
        except (OSError, AttributeError):
            pass
        peak = max(peak_rss(pid), rss)
        self.kill()
        over = "over" if peak > share else "growing past"
        log.warning("job %s took %s to %s, %s its share of the memory budget (%s of %s); killed it", job.id,
                    self.name, gib(peak), over, gib(share), gib(self.pool.limits.max_memory))
        job.why = job.why or (ErrorCode.TOO_LARGE, "")
        self._send(out, job, Error(ErrorCode.TOO_LARGE,
                                   f"the job took its worker to {gib(peak)} of memory, {over} its share of the "
                                   f"backend's budget: {gib(share)} of {gib(self.pool.limits.max_memory)} "
                                   "(--max-memory)", "split a smaller layer or a selection of it, or raise the "
                                   "backend's --max-memory", job=job.id), last=True)
        return True

    def _died(self, job: Job, out: zmq.Socket) -> None:
        code = self.proc.exitcode if self.proc is not None else None
        self.kill()
        if job.why:  # stopped on purpose meanwhile (shutting down): say that
            self._send(out, job, self._stopped(job), last=True)
            return
        failure = to_reply(RuntimeError(), _logged(f"in job {job.id}: {self.name} died (exit code {code}); starting "
                                                   "another"))
        self._send(out, job, failure.error(job.id), last=True)

    def _check_room(self, job: Job) -> None:
        """The full estimate (models this worker has not loaded included) against what the budget leaves now;
        reserves it. A job that cannot run says why (not_available) before whether it would fit."""
        if job.models:
            self.pool.models.require(list(job.models))
        on_gpu = any(not REGISTRY[n].on_cpu for n in job.models) and self.accelerated()
        estimate = estimate_job(job.message, weight_bytes(_Loaded(self.pool.models, self.loaded)), on_gpu)
        free = self.pool.share(self) - self.memory()
        while estimate.nbytes > free and time.monotonic() < job.room_by:  # being freed for it (server.FREEING_S)
            time.sleep(0.05)
            free = self.pool.share(self) - self.memory()
        if estimate.nbytes > free:
            raise too_large(estimate.what, estimate.nbytes, self.pool.limits.max_memory,
                            self.pool.limits.max_memory - free)
        self.reserved = self.memory() + estimate.nbytes


def _logged(text: str) -> Callable[[], str]:
    """An incident id for a failure with no traceback of its own (a worker that died or never started), logged
    with `text`."""

    def incident() -> str:
        key = uuid.uuid4().hex[:8]
        log.error("internal error %s %s", key, text)
        return key

    return incident


class _Loaded:
    """The server's model manager, answering for one worker's loaded models (for weight_bytes)."""

    def __init__(self, models: ModelManager, loaded: set[str]) -> None:
        self.models, self._loaded = models, loaded

    def loaded(self) -> set[str]:
        return self._loaded

    def resolve(self, name: str) -> Any:
        return self.models.resolve(name)


class Pool:
    """The workers, the queue they take jobs from, and the inproc socket their replies reach the loop by."""

    def __init__(self, specs: list[WorkerSpec], queue: JobQueue, limits: Limits, models: ModelManager,
                 ctx: zmq.Context, endpoint: str, server_rss: Callable[[], int]) -> None:
        self.queue, self.limits, self.models, self.ctx, self.endpoint = queue, limits, models, ctx, endpoint
        self.server_rss = server_rss
        self.helpers: list[Rss] = []  # the server's other children (multiprocessing's resource tracker)
        self.workers = [Worker(self, spec) for spec in specs]
        self.transfers = 0  # requests and results passing through this process now
        self.transferred = 0.0  # when the last one ended
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def transfer(self) -> Iterator[None]:
        with self.lock:
            self.transfers += 1
        try:
            yield
        finally:
            with self.lock:
                self.transfers -= 1
                self.transferred = time.monotonic()

    def transferring(self) -> bool:
        """A request or a result passes through the server's memory (until the loop has it): the in-flight
        watch charges no growth to unfinished messages meanwhile."""
        return self.transfers > 0 or time.monotonic() - self.transferred < TRANSFER_SETTLE_S

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
            worker.thread.start()
        try:  # started with the first worker; its memory counts toward the budget too
            self.helpers = [Rss(p.pid) for p in psutil.Process().children()
                            if "multiprocessing.resource_tracker" in " ".join(p.cmdline())]
        except psutil.Error:
            pass

    def replies_socket(self) -> zmq.Socket:
        out = self.ctx.socket(zmq.PUSH)
        out.connect(self.endpoint)
        return out

    def share(self, worker: Worker) -> int:
        """What the budget leaves this worker: less the server's own memory, its helpers' and the other workers'."""
        others = sum(w.footprint() for w in self.workers if w is not worker)
        return self.limits.max_memory - self.server_rss() - sum(rss() for rss in self.helpers) - others

    def idle_memory(self) -> int:
        return sum(w.idle_rss for w in self.workers)

    def running(self) -> list[Job]:
        return [w.job for w in self.workers if w.job is not None]

    def stop(self, wait_s: float) -> None:
        """Workers end their jobs (cancelled by the caller) or are killed after `wait_s`; threads end."""
        deadline = time.monotonic() + wait_s
        for worker in self.workers:
            worker.thread.join(max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            if worker.conn is not None and worker.alive():
                try:
                    worker.conn.send(("stop",))
                except (OSError, ValueError):
                    pass
        for worker in self.workers:
            if worker.proc is not None:
                worker.proc.join(max(0.05, deadline - time.monotonic()))
            worker.kill()
        for worker in self.workers:
            worker.thread.join(1.0)
            if not worker.thread.is_alive():
                # its cancel flag's semaphores unlinked now, as their finalizers do: the server ends with os._exit,
                # which skips those, and multiprocessing's resource tracker then warns of them as leaked
                worker.cancel = None
        gc.collect()
        for rss in self.helpers:
            rss.close()
