"""A worker process: runs jobs one at a time for the server, on one device, with its own loaded models.

It is started with multiprocessing's spawn method (a fork of the server would copy its sockets and threads) and
talks to its supervising thread in the server over a pipe: a job comes as ("job", id, n) and n request frames;
progress and the result go back as ("reply", last, n, stage or loaded models) and n encoded reply frames, a
cancelled job as ("cancelled", loaded). Cancel is an Event the job's progress checks; the server kills a worker
that does not confirm in time, or that goes over its share of the memory budget, and starts another.

Nothing heavy is imported before the thread limits are set (numba and OpenMP read them once).
"""

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

PROGRESS_MIN_INTERVAL_S = 0.05  # progress events are coalesced to this rate, stage changes always go
PARENT_CHECK_S = 0.5
RUNNER = "layeringdiff.pipeline:run_job"


@dataclass(frozen=True)
class WorkerSpec:
    index: int
    models: Any  # ModelConfig, its device this worker's
    threads: int  # CPU threads for numba, OpenMP and OpenCV (the cores shared among the CPU workers)
    max_pixels: int
    runner: str = RUNNER  # "module:function" that runs a job (tests give their own)


def limit_threads(threads: int) -> None:
    for name in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)


def load_runner(path: str) -> Any:
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _orphaned(parent: int) -> None:
    """Leave when the server is gone (killed without a chance to stop us): nobody would read our replies."""
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent:
            os._exit(0)


def worker_main(conn: Any, cancel: Any, spec: WorkerSpec, parent: int) -> None:
    limit_threads(spec.threads)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s %(name)s[worker {spec.index}]: %(message)s")
    logging.raiseExceptions = False
    threading.Thread(target=_orphaned, args=(parent,), name="layeringdiff-orphan-check", daemon=True).start()
    import cv2

    from ..models import ModelManager

    cv2.setNumThreads(spec.threads)
    runner = load_runner(spec.runner)
    models = ModelManager(spec.models)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            header = conn.recv()
        except (EOFError, OSError):
            return
        if header[0] != "job":
            return
        _, job_id, count = header
        frames = [conn.recv_bytes() for _ in range(count)]
        run_one(conn, cancel, spec, runner, models, job_id, frames)
        del frames


def run_one(conn: Any, cancel: Any, spec: WorkerSpec, runner: Any, models: Any, job_id: str,
            frames: list[bytes]) -> None:
    from layering_protocol import Progress, Result, decode, encode

    from ..errors import JobCancelled
    from ..peers import release_memory
    from ..replies import bounded, incident_logger, to_reply

    log = logging.getLogger("layeringdiff.worker")

    def send(message: Any, last: bool = False) -> None:
        out = encode(bounded(message), reply_to=job_id)
        # after the last reply, the models it left loaded (the server prefers this worker for jobs that need them)
        conn.send(("reply", last, len(out), sorted(models.loaded()) if last else getattr(message, "stage", "")))
        for frame in out:
            conn.send_bytes(frame)

    last = [0.0, ""]

    def progress(stage: str, fraction: float) -> None:
        if cancel.is_set():
            raise JobCancelled()
        now = time.monotonic()
        if stage != last[1] or now - last[0] >= PROGRESS_MIN_INTERVAL_S or fraction >= 1.0:
            last[0], last[1] = now, stage
            send(Progress(job_id, stage, float(fraction)))

    try:
        message = decode(frames, spec.max_pixels).message
        progress("start", 0.0)
        output = runner(message, progress, models)
        if cancel.is_set():
            raise JobCancelled()
        send(Result(job_id, output.foreground, output.background, output.alpha, output.info, output.behind),
             last=True)
    except JobCancelled:
        conn.send(("cancelled", sorted(models.loaded())))
    except Exception as exc:  # every failure is a reply; the worker goes on to the next job
        failure = to_reply(exc, incident_logger(log, f"in job {job_id}"))
        send(failure.error(job_id), last=True)
    finally:
        release_memory()
