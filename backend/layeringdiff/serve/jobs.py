"""Jobs and their queue: admission against the limits, and a fair order (clients in turn, each one's jobs in
the order sent), so one client with ten jobs cannot starve another with one.

Job ids belong to the client that sent them: the server keeps jobs by (connection, id), so a client can neither
take nor probe another's ids. A job is admitted when it arrives (queue limits, and the least memory it can need);
the worker that takes it checks the full estimate against what the budget leaves at that moment.
"""

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from layering_protocol import ErrorCode, ProtocolError, clip

from ..job_memory import estimate_job
from ..limits import CLIENT_QUEUED_SHARE, Limits, gib

TURNS_KEPT = 1024  # clients whose last turn is remembered while they have nothing queued or running


@dataclass(eq=False)  # compared by identity: the queue finds a job without comparing its images
class Job:
    id: str
    identity: bytes
    message: Any  # the decoded request (its images view `frames`); dropped once a worker has it
    frames: list[Any] | None = None  # the request as received: what the worker decodes
    owner: str = ""  # the client's key, or its connection: what the per-client limit and the turns count
    input_bytes: int = 0
    models: tuple[str, ...] = ()  # the models it needs (a worker that has them loaded is preferred)
    cancel: threading.Event = field(default_factory=threading.Event)
    stage: str = "queued"
    why: tuple[str, str] | None = None  # (code, text) when stopped for another reason than a cancel request
    room_by: float = 0.0  # admitted on memory being freed (stalled replies cut off): given back by then

    def stop(self, code: str, text: str) -> None:
        if self.why is None:
            self.why = (code, text)
        self.cancel.set()

    def drop(self) -> None:
        """Its images, freed now (a worker has its own copy, or the job is over)."""
        self.message = self.frames = None
        self.input_bytes = 0


class JobQueue:
    """Waiting jobs by client, clients in turn: a worker takes the first job of the client whose last job was taken
    longest ago (a client never served first), among the jobs it should run. Shared by the loop and the workers'
    threads."""

    def __init__(self) -> None:
        self.ready = threading.Condition()
        self.waiting: dict[str, deque[Job]] = {}  # owner -> its jobs, owners in the order they came
        self.last_turn: dict[str, int] = {}  # owner -> when it last had a job taken
        self.turns = 0
        self.running: set[Job] = set()
        self.closing = False

    def _order(self, also: str = "") -> list[str]:
        owners = [*self.waiting, *([also] if also and also not in self.waiting else [])]
        return sorted(owners, key=lambda owner: self.last_turn.get(owner, -1))  # stable: ties keep their order

    def put(self, job: Job, workers: int) -> int:
        """Queue a job; returns its position: how many jobs must start (or a worker free up) before it starts,
        0 when a worker is free for it now."""
        with self.ready:
            mine = len(self.waiting.get(job.owner, ()))
            before, seen = mine, False
            for owner in self._order(job.owner):  # rounds of one job per client: ours is in round mine + 1
                if owner == job.owner:
                    seen = True
                    continue
                before += min(len(self.waiting[owner]), mine if seen else mine + 1)
            position = max(0, before + len(self.running) - workers + 1)
            self.waiting.setdefault(job.owner, deque()).append(job)
            self.ready.notify_all()
            return position

    def take(self, fits: Callable[[Job], bool], wait_s: float = 0.25) -> Job | None:
        """Block until a job this worker should run waits (`fits`: False leaves it to a better-placed worker),
        and take it; None once the queue closes."""
        with self.ready:
            while not self.closing:
                for owner in self._order():
                    jobs = self.waiting[owner]
                    if fits(jobs[0]):
                        job = jobs.popleft()
                        self.turns += 1
                        self.last_turn[owner] = self.turns
                        self.running.add(job)  # before forgetting: a client whose job runs keeps its turn
                        if not jobs:
                            self._forget(owner)
                        return job
                self.ready.wait(wait_s)
            return None

    def _forget(self, owner: str) -> None:
        """Nothing of this client waits. Its last turn is kept (its next job queues behind clients served less
        lately), unless many clients come and go: then those with nothing waiting or running are forgotten."""
        del self.waiting[owner]
        if len(self.last_turn) > TURNS_KEPT:
            busy = set(self.waiting) | {job.owner for job in self.running}
            self.last_turn = {o: turn for o, turn in self.last_turn.items() if o in busy}

    def done(self, job: Job) -> None:
        with self.ready:
            self.running.discard(job)
            self.ready.notify_all()  # a worker free again, its models loaded: others look again

    def withdraw(self, job: Job) -> bool:
        """Take a job no worker has started off the queue; False when one has taken it already."""
        with self.ready:
            jobs = self.waiting.get(job.owner)
            if jobs is None or job not in jobs:
                return False
            jobs.remove(job)
            if not jobs:
                self._forget(job.owner)
            return True

    def queued(self) -> list[Job]:
        with self.ready:
            return [job for jobs in self.waiting.values() for job in jobs]

    def close(self) -> list[Job]:
        """No worker takes another job; returns those that waited."""
        with self.ready:
            self.closing = True
            left = [job for jobs in self.waiting.values() for job in jobs]
            self.waiting.clear()
            self.last_turn.clear()
            self.ready.notify_all()
            return left


def too_large(what: str, need: int, budget: int, in_use: int) -> ProtocolError:
    return ProtocolError(ErrorCode.TOO_LARGE,
                         f"{what} needs about {gib(need)} of memory; the backend's budget is {gib(budget)} "
                         f"(--max-memory), {gib(in_use)} of it in use",
                         "split a smaller layer or a selection of it, or raise the backend's --max-memory")


def admit(job: Job, jobs: dict[tuple[bytes, str], Job], queued: Iterable[Job], limits: Limits, in_use: int) -> None:
    """Queue limits and a first memory check (the pixels alone, against what the backend holds when idle; the
    full estimate when a worker takes it). A client's first queued job may take the whole of the queued images'
    room; with more, its images may take 1/CLIENT_QUEUED_SHARE of it. A cancelled job counts no more (a running
    one may take a moment to stop). Raises ProtocolError (busy, too_large, or a job id in use)."""
    if (job.identity, job.id) in jobs:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"job id {clip(job.id, 40)} is already in use")
    live = [j for j in jobs.values() if not j.cancel.is_set()]
    mine = sum(1 for j in live if j.owner == job.owner)
    if mine >= limits.client_jobs:
        raise ProtocolError(ErrorCode.BUSY, f"this client has {mine} jobs queued or running, the limit is "
                                            f"{limits.client_jobs}", "wait for one to finish, or cancel one")
    if len(live) >= limits.jobs:
        raise ProtocolError(ErrorCode.BUSY, f"the backend has {len(live)} jobs queued or running, the limit is "
                                            f"{limits.jobs}", "try again in a while")
    queued = [j for j in queued if not j.cancel.is_set()]
    waiting = sum(j.input_bytes for j in queued) + job.input_bytes
    own = sum(j.input_bytes for j in queued if j.owner == job.owner)
    if own and own + job.input_bytes > limits.queued_input // CLIENT_QUEUED_SHARE:
        raise ProtocolError(ErrorCode.BUSY, f"this client's queued jobs' images would take "
                                            f"{gib(own + job.input_bytes)}, more than its share of "
                                            f"{gib(limits.queued_input // CLIENT_QUEUED_SHARE)} (the backend's "
                                            "other clients keep room)", "wait for one of them to start")
    if waiting > limits.queued_input:
        raise ProtocolError(ErrorCode.BUSY, f"the queued jobs' images would take {gib(waiting)}, more than the "
                                            f"backend's limit of {gib(limits.queued_input)}",
                            "try again when the queue is shorter")
    estimate = estimate_job(job.message, weights=lambda name: 0, on_gpu=True, least=True)  # the least it can need
    if estimate.nbytes > limits.max_memory - in_use:
        raise too_large(estimate.what, estimate.nbytes, limits.max_memory, in_use)
