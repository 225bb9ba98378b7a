"""Jobs in worker processes, over real sockets: the server stays responsive and within its memory budget whatever
a worker does; cancel is confirmed within a second in any step; the queue is fair between clients; two workers
run two jobs at once.

The workers run test job runners (tests/integration/runners.py) in place of the pipeline where a job must hold,
stick, grow or crash on purpose.
"""

import threading
import time
from typing import Any

import numpy as np
import psutil
from layering_protocol import Accepted, Cancel, Cancelled, Error, ErrorCode, Ping, Pong, Result, Split
from layeringdiff.client import Client, result_arrays
from layeringdiff.imaging.compose import compose
from layeringdiff.serve import ServerConfig

from tests.conftest import in_process_server
from tests.integration.test_server import layer_and_mask
from tests.timing import LOADED_MARGIN_S

RUNNERS = "tests.integration.runners:"
CANCEL_PROMISE_S = 1.0  # the target: cancel confirmed within 1 s in every stage


def layer(side: int = 32) -> Split:
    _, image, mask = layer_and_mask(side)
    return Split(image, mask=mask)


def until_stage(c: Client, job_id: str, stage: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        env = c.recv(max(0.0, deadline - time.monotonic()))
        if env.reply_to == job_id and getattr(env.message, "stage", "") == stage:
            return


def final(c: Client, job_id: str, timeout: float = 60.0) -> Any:
    return [e.message for e in c.events(job_id, timeout)][-1]


class Pings(threading.Thread):
    """Another client pinging all along: the worst round trip."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.endpoint, self.worst, self.count, self.done = endpoint, 0.0, 0, threading.Event()

    def run(self) -> None:
        with Client(self.endpoint) as c:
            while not self.done.is_set():
                t = time.monotonic()
                assert isinstance(c.request(Ping(0.0), 10).message, Pong)
                self.worst = max(self.worst, time.monotonic() - t)
                self.count += 1
                time.sleep(0.02)

    def stop(self) -> float:
        self.done.set()
        self.join(10)
        return self.worst


def test_a_step_that_never_looks_at_cancel_is_cancelled_within_a_second_and_the_next_job_runs():
    """The worker is killed when it does not confirm in time; a new one serves the next job (a real split)."""
    with in_process_server(ServerConfig(job_runner=RUNNERS + "stuck")) as endpoint, Client(endpoint) as c:
        job = c.send(layer())
        until_stage(c, job, "stuck")
        t = time.monotonic()
        c.send(Cancel(job))
        assert isinstance(final(c, job), Cancelled)
        assert time.monotonic() - t < CANCEL_PROMISE_S + LOADED_MARGIN_S
        again = c.send(layer())
        until_stage(c, again, "stuck")  # a fresh worker took it
        c.send(Cancel(again))
        assert isinstance(final(c, again), Cancelled)


def test_a_job_past_the_backends_time_limit_is_stopped_and_answered_too_large_and_the_next_one_runs():
    """--max-job-seconds: one that checks its cancel (held) and one that never does (stuck: its worker killed)
    are each answered at the limit, with the option named; a job's time starts when its worker takes it."""
    limit = 1.0
    config = ServerConfig(job_runner=RUNNERS + "stuck", max_job_seconds=limit)
    with in_process_server(config) as endpoint, Client(endpoint) as c:
        for _ in range(2):  # the second in the worker started after the first's was killed
            job = c.send(layer())
            until_stage(c, job, "stuck")
            t = time.monotonic()
            answer = final(c, job)
            assert isinstance(answer, Error) and answer.code == ErrorCode.TOO_LARGE, answer
            assert answer.text.startswith(f"the job ran longer than the backend's limit of {limit:g} s a job "
                                          "(--max-job-seconds)"), answer.text
            assert time.monotonic() - t < limit + CANCEL_PROMISE_S + LOADED_MARGIN_S
    with in_process_server(ServerConfig(job_runner=RUNNERS + "held", max_job_seconds=limit)) as endpoint, \
            Client(endpoint) as c:
        job = c.send(layer())
        until_stage(c, job, "held")
        answer = final(c, job)
        assert isinstance(answer, Error) and "--max-job-seconds" in answer.text, answer
    with in_process_server(ServerConfig(max_job_seconds=30.0)) as endpoint, Client(endpoint) as c:
        assert isinstance(final(c, c.send(layer())), Result)  # a real split well within it


def test_a_cancel_between_steps_is_confirmed_by_the_worker_itself():
    with in_process_server(ServerConfig(job_runner=RUNNERS + "held")) as endpoint, Client(endpoint) as c:
        job = c.send(layer())
        until_stage(c, job, "held")
        t = time.monotonic()
        c.send(Cancel(job))
        assert isinstance(final(c, job), Cancelled)
        assert time.monotonic() - t < 0.25 + LOADED_MARGIN_S  # the next step (10 ms), not the kill after 0.5 s


def test_a_worker_growing_past_its_share_of_the_budget_is_killed_and_its_job_answered_with_the_peak():
    """The job grows 8 MB every 10 ms and never reports progress: only the worker's memory shows it. The
    worker is stopped before the next look would find it over its share, so the server, its resource tracker and
    its workers together stay within the budget (16 MB of slack: a look that comes more than 10 ms late on a
    loaded machine); another client's pings go on; the next job runs in a fresh worker."""
    me = psutil.Process()
    budget = me.memory_info().rss + (700 << 20)
    config = ServerConfig(job_runner=RUNNERS + "greedy", max_memory=budget)
    with in_process_server(config) as endpoint, Client(endpoint) as c:
        pings = Pings(endpoint)
        pings.start()
        peak, stop = [0], threading.Event()

        def watch() -> None:
            while not stop.is_set():
                total = me.memory_info().rss
                for child in me.children():
                    try:
                        total += child.memory_info().rss
                    except psutil.Error:
                        pass
                peak[0] = max(peak[0], total)
                time.sleep(0.002)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        for _ in range(2):
            err = final(c, c.send(layer()))
            assert isinstance(err, Error) and err.code == ErrorCode.TOO_LARGE, err
            assert "took its worker to" in err.text and "its share of the backend's budget" in err.text
            assert "--max-memory" in err.text
        stop.set()
        watcher.join(5)
        assert peak[0] < budget + (16 << 20), f"peak {peak[0] >> 20} MB, budget {budget >> 20} MB"
        assert pings.stop() < 0.25 + LOADED_MARGIN_S and pings.count > 10


def test_a_large_allocation_within_the_share_is_not_taken_for_growth():
    """A job that allocates 350 MB at once and holds it, with about 490 MB of share left: the look ahead follows
    steady growth only, so it runs to its result."""
    from tests.integration.runners import JUMP_BYTES

    budget = psutil.Process().memory_info().rss + (700 << 20)
    with in_process_server(ServerConfig(job_runner=RUNNERS + "jumper", max_memory=budget)) as endpoint, \
            Client(endpoint) as c:
        assert JUMP_BYTES < 700 << 20
        result = final(c, c.send(layer()))
        assert isinstance(result, Result), result


def test_a_worker_that_crashes_is_answered_internal_and_replaced():
    with in_process_server(ServerConfig(job_runner=RUNNERS + "crash")) as endpoint, Client(endpoint) as c:
        for _ in range(2):
            err = final(c, c.send(layer()))
            assert isinstance(err, Error) and err.code == ErrorCode.INTERNAL and "log id" in err.text
        assert isinstance(c.request(Ping(0.0), 10).message, Pong)


def test_one_client_with_ten_jobs_does_not_starve_another_with_one():
    """Clients take turns: with A's first job running and nine more of A's waiting, B's one job is the next to
    start, and then A's second."""
    config = ServerConfig(job_runner=RUNNERS + "held", max_client_jobs=12)
    with in_process_server(config) as endpoint, Client(endpoint) as a, Client(endpoint) as b:
        mine = [a.send(layer()) for _ in range(10)]
        until_stage(a, mine[0], "held")
        theirs = b.send(layer())
        accepted = b.recv(10)
        assert isinstance(accepted.message, Accepted) and accepted.message.position == 1
        a.send(Cancel(mine[0]))
        until_stage(b, theirs, "held")  # B's job started next ...
        b.send(Cancel(theirs))
        assert isinstance(final(b, theirs), Cancelled)
        until_stage(a, mine[1], "held")  # ... then A's second
        for job in mine[1:]:
            a.send(Cancel(job))


def test_two_workers_run_two_jobs_at_once():
    config = ServerConfig(job_runner=RUNNERS + "held", workers=2)
    with in_process_server(config) as endpoint, Client(endpoint) as c:
        first, second = c.send(layer()), c.send(layer())
        until_stage(c, first, "held")
        until_stage(c, second, "held")
        third = c.send(layer())
        env = c.recv(10)
        while env.reply_to != third:
            env = c.recv(10)
        assert isinstance(env.message, Accepted) and env.message.position == 1
        for job in (first, second, third):
            c.send(Cancel(job))
            assert isinstance(final(c, job), Cancelled)


def test_the_real_pipeline_runs_in_the_worker_and_its_layers_recompose_the_layer_sent():
    """The default runner: the request decoded in the worker, the layers encoded there and forwarded by the server
    recompose the layer that was sent, within one 8-bit level (f32 layers)."""
    rgba, image, mask = layer_and_mask(64)
    with in_process_server() as endpoint, Client(endpoint) as c:
        result = final(c, c.send(Split(image, mask=mask, options={"fill": "smooth"})))
        assert isinstance(result, Result) and result.info["method"] == "classical"
        out = result_arrays(result)
        a = out["foreground"][..., 3]
        recomposed = compose(a, out["foreground"][..., :3], out["background"][..., :3])
        assert np.abs(recomposed - rgba[..., :3])[a < 1.0].max() <= 1 / 255 + 1e-6


def test_a_worker_that_cannot_start_answers_the_waiting_job_instead_of_leaving_it_waiting():
    """Here its job runner cannot be imported (as a broken installation would fail): after three tries in a row
    the job is answered `internal`, and the server goes on answering."""
    config = ServerConfig(job_runner="tests.integration.no_such_module:run")
    with in_process_server(config) as endpoint, Client(endpoint) as c:
        err = final(c, c.send(layer()), timeout=120)
        assert isinstance(err, Error) and err.code == ErrorCode.INTERNAL and "log id" in err.text
        assert isinstance(c.request(Ping(0.0), 10).message, Pong)
