"""The job queue over real sockets: what a cancelled job still holds, whose job ids are whose.

The server runs in this process; its worker process runs a job runner that holds it until its job is cancelled
(or the server stops), so which jobs run and which wait is certain.
"""

import time
from typing import Any

from layering_protocol import Accepted, Cancel, Cancelled, Error, ErrorCode, Progress, Split, encode
from layeringdiff.client import Client
from layeringdiff.limits import CLIENT_JOBS
from layeringdiff.serve import ServerConfig

from tests.conftest import in_process_server
from tests.integration.test_server import layer_and_mask

HELD = "tests.integration.runners:held"


def layer() -> Split:
    _, image, mask = layer_and_mask(32)
    return Split(image, mask=mask)


def answer(c: Client, msg_id: str, *also: str, timeout: float = 10.0) -> Any:
    """The first reply to msg_id (or to one of `also`) that is not a progress event; others are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        env = c.recv(max(0.0, deadline - time.monotonic()))
        if env.reply_to in (msg_id, *also) and not isinstance(env.message, Progress):
            return env.message


def submit(c: Client, job_id: str | None = None) -> tuple[str, Any]:
    job_id = c.send(layer(), job_id)
    return job_id, answer(c, job_id)


def cancel(c: Client, job_id: str) -> Any:
    """The answer to cancelling job_id: `cancelled` for the job, or an error for the cancel request."""
    return answer(c, job_id, c.send(Cancel(job_id)))


def started(c: Client, job_id: str, timeout: float = 10.0) -> None:
    """Wait for the job's first progress event: the worker has it, jobs sent after it wait."""
    deadline = time.monotonic() + timeout
    while not (isinstance((env := c.recv(max(0.0, deadline - time.monotonic()))).message, Progress)
               and env.reply_to == job_id):
        pass


def is_busy(reply: Any) -> bool:
    return isinstance(reply, Error) and reply.code == ErrorCode.BUSY


def test_cancelled_queued_jobs_count_no_more_at_once():
    """A client at its limit (one job running, three waiting) cancels the waiting ones: each is answered
    `cancelled` at once, while the first still runs, and three new jobs take their places, of this client's
    limit and of the backend's."""
    assert CLIENT_JOBS == 4
    config = ServerConfig(max_jobs=6, job_runner=HELD)
    with in_process_server(config) as endpoint, Client(endpoint) as c, Client(endpoint) as other:
        jobs = [submit(c) for _ in range(CLIENT_JOBS)]
        started(c, jobs[0][0])
        assert all(isinstance(reply, Accepted) for _, reply in jobs)
        assert is_busy(submit(c)[1])
        for job_id, _ in jobs[1:]:
            assert isinstance(cancel(c, job_id), Cancelled)
        again = [submit(c) for _ in range(CLIENT_JOBS - 1)]
        assert all(isinstance(reply, Accepted) for _, reply in again), again
        busy = submit(c)[1]
        assert is_busy(busy) and "this client has 4 jobs" in busy.text
        # the backend's limit (6): the other client's two cancelled jobs make room for two more
        theirs = [submit(other) for _ in range(2)]
        assert all(isinstance(reply, Accepted) for _, reply in theirs)
        busy = submit(other)[1]
        assert is_busy(busy) and "the backend has 6 jobs" in busy.text
        for job_id, _ in theirs:
            assert isinstance(cancel(other, job_id), Cancelled)
        assert all(isinstance(submit(other)[1], Accepted) for _ in range(2))


def test_a_cancelled_job_gives_its_queued_bytes_back_at_once():
    one = sum(memoryview(f).nbytes for f in encode(layer(), "x" * 32))  # a job's bytes, as client.send sends it
    config = ServerConfig(job_runner=HELD)
    with in_process_server(config, queued_input=one + one // 2) as endpoint, Client(endpoint) as c:
        running = submit(c)
        started(c, running[0])
        waiting = submit(c)
        assert isinstance(running[1], Accepted) and isinstance(waiting[1], Accepted)
        busy = submit(c)[1]
        assert is_busy(busy) and "queued jobs' images" in busy.text
        assert isinstance(cancel(c, waiting[0]), Cancelled)
        assert isinstance(submit(c)[1], Accepted)


def test_a_job_id_is_free_again_once_its_job_is_answered():
    """Cancelled while waiting, cancelled while running, and reused at once each time; an id still in use is
    refused."""
    with in_process_server(ServerConfig(job_runner=HELD)) as endpoint, Client(endpoint) as c:
        assert isinstance(submit(c, "running")[1], Accepted)
        started(c, "running")
        for _ in range(3):
            assert isinstance(submit(c, "waiting")[1], Accepted)
            refused = submit(c, "waiting")[1]
            assert isinstance(refused, Error) and refused.code == ErrorCode.BAD_MESSAGE and "in use" in refused.text
            assert isinstance(cancel(c, "waiting"), Cancelled)
        for _ in range(3):  # the running job is answered at its next step; then its id is free
            assert isinstance(cancel(c, "running"), Cancelled)
            assert isinstance(submit(c, "running")[1], Accepted)


def test_job_ids_are_each_clients_own():
    """Another client's job id answers exactly as an id that nobody uses: it can be used again, and a cancel
    of it is `unknown_job` and leaves that job alone."""
    with in_process_server(ServerConfig(job_runner=HELD)) as endpoint, Client(endpoint) as c, Client(endpoint) as other:
        assert isinstance(submit(c, "mine")[1], Accepted)
        assert isinstance(submit(c, "second")[1], Accepted)
        unknown = cancel(other, "nobody-has-it")
        for job_id in ("mine", "second"):
            refused = cancel(other, job_id)
            assert isinstance(refused, Error)
            assert (refused.code, refused.text.replace(job_id, "?"), refused.detail, refused.job) == \
                (unknown.code, unknown.text.replace("nobody-has-it", "?"), unknown.detail, job_id)
            assert isinstance(submit(other, job_id)[1], Accepted)  # the same id, this client's own job
        # each client's cancel reaches its own job only
        assert isinstance(cancel(other, "second"), Cancelled)
        assert isinstance(cancel(c, "second"), Cancelled)
        assert isinstance(cancel(c, "mine"), Cancelled)
        assert isinstance(cancel(other, "mine"), Cancelled)


def test_accepted_says_how_many_jobs_start_before_it_with_two_workers():
    """Two workers: the first two jobs start at once (position 0), the third waits for one of them (1), the fourth
    for both (2). Once both run, another client's first job goes before this client's waiting ones (its first
    round): it waits for one worker (1)."""
    with in_process_server(ServerConfig(workers=2, job_runner=HELD)) as endpoint, Client(endpoint) as c, \
            Client(endpoint) as other:
        mine = [submit(c) for _ in range(4)]
        assert [reply for _, reply in mine] == [Accepted(job_id, p)
                                                for (job_id, _), p in zip(mine, (0, 0, 1, 2), strict=True)]
        running: set[str] = set()
        deadline = time.monotonic() + 10
        while len(running) < 2:  # both workers have theirs; the other two wait
            env = c.recv(max(0.0, deadline - time.monotonic()))
            if isinstance(env.message, Progress):
                running.add(env.reply_to)
        assert running == {mine[0][0], mine[1][0]}
        theirs = submit(other)
        assert theirs[1] == Accepted(theirs[0], 1)
        for job_id, _ in (*mine, theirs):
            assert isinstance(cancel(other if job_id == theirs[0] else c, job_id), Cancelled)


def test_the_memory_admission_counts_goes_down_while_jobs_run_not_only_when_the_server_idles():
    """A moment of held replies (a client's echoes, read later) was counted for as long as any job stayed queued or
    running: one client keeping a small job going had every larger job refused too_large on a nearly idle server.
    Seen with a job running, the server's memory now lowers the figure (a rise waits for the idle: results going
    out are not counted against the next job)."""
    from tests.conftest import in_process

    with in_process(ServerConfig(job_runner=HELD)) as server, Client(server.endpoint) as c:
        job_id, reply = submit(c)
        assert isinstance(reply, Accepted)
        started(c, job_id)
        real = server.transport.rss()
        server.idle_rss = real + (3 << 30)  # as if 3 GB of replies had been held when it was last read
        deadline = time.monotonic() + 5
        while server.idle_rss > real + (256 << 20) and time.monotonic() < deadline:
            time.sleep(0.05)  # the loop's checks come every 0.25 s
        assert server.idle_rss <= real + (256 << 20), server.idle_rss - real
        low = server.idle_rss
        server.idle_rss = max(0, low - (64 << 20))  # lower than the memory now: a job running keeps it so
        time.sleep(0.6)
        assert server.idle_rss == max(0, low - (64 << 20))
        assert isinstance(cancel(c, job_id), Cancelled)
