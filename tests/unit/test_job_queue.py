"""The job queue's order and positions, worked out by hand from the rule: clients take turns, the client whose
last job was taken longest ago first (one never served before it), each client's jobs in order."""

import threading

from layeringdiff.serve.jobs import Job, JobQueue


def job(owner: str, n: int) -> Job:
    return Job(f"{owner}{n}", owner.encode(), message=None, owner=owner)


def taken(queue: JobQueue, count: int, fits=lambda j: True) -> list[str]:
    return [queue.take(fits, wait_s=0.01).id for _ in range(count)]


def test_clients_take_turns_and_a_newcomer_goes_before_the_one_just_served():
    queue = JobQueue()
    for n in range(1, 5):
        queue.put(job("a", n), workers=1)
    assert taken(queue, 1) == ["a1"]
    queue.put(job("b", 1), workers=1)
    queue.put(job("c", 1), workers=1)
    queue.put(job("b", 2), workers=1)
    assert taken(queue, 6) == ["b1", "c1", "a2", "b2", "a3", "a4"]


def test_positions_count_the_jobs_that_start_first():
    queue = JobQueue()
    assert queue.put(job("a", 1), workers=1) == 0  # a free worker: it starts now
    assert queue.put(job("a", 2), workers=1) == 1
    assert taken(queue, 1) == ["a1"]  # running now; a2 waits
    # b1 goes before a2 (a had the last turn): only the running job is ahead
    assert queue.put(job("b", 1), workers=1) == 1
    # b2 is in b's second round: after b1 and a2, and the running a1
    assert queue.put(job("b", 2), workers=1) == 3
    # c has had no turn either: after b1 (who came first), before a2; behind a1
    assert queue.put(job("c", 1), workers=1) == 2
    assert taken(queue, 4) == ["b1", "c1", "a2", "b2"]


def test_with_two_workers_a_job_starts_at_once_while_one_is_free():
    queue = JobQueue()
    assert queue.put(job("a", 1), workers=2) == 0
    assert taken(queue, 1) == ["a1"]
    assert queue.put(job("b", 1), workers=2) == 0  # the second worker is free
    assert taken(queue, 1) == ["b1"]
    assert queue.put(job("a", 2), workers=2) == 1  # both busy: one must free up


def test_a_job_left_for_a_better_placed_worker_is_skipped_not_lost():
    queue = JobQueue()
    queue.put(job("a", 1), workers=2)
    queue.put(job("b", 1), workers=2)
    assert taken(queue, 1, fits=lambda j: j.owner != "a") == ["b1"]
    assert taken(queue, 1) == ["a1"]


def test_withdrawn_and_closed():
    queue = JobQueue()
    jobs = [job("a", 1), job("a", 2), job("b", 1)]
    for j in jobs:
        queue.put(j, workers=1)
    assert queue.withdraw(jobs[1]) and not queue.withdraw(jobs[1])
    assert [j.id for j in queue.queued()] == ["a1", "b1"]
    assert taken(queue, 1) == ["a1"]
    assert not queue.withdraw(jobs[0])  # running: not the queue's to withdraw
    assert [j.id for j in queue.close()] == ["b1"]
    assert queue.take(lambda j: True, wait_s=0.01) is None


def test_a_waiting_worker_takes_a_job_as_it_comes():
    queue = JobQueue()
    got = []
    worker = threading.Thread(target=lambda: got.append(queue.take(lambda j: True, wait_s=5.0)))
    worker.start()
    queue.put(job("a", 1), workers=1)
    worker.join(2)
    assert [j.id for j in got] == ["a1"]


def test_a_client_whose_jobs_were_all_taken_at_once_still_had_its_turn():
    """A's first job went to a free worker at once (nothing of A waited); A's next job still queues behind a
    client that had no turn yet."""
    queue = JobQueue()
    queue.put(job("a", 1), workers=2)
    assert taken(queue, 1) == ["a1"]
    queue.put(job("a", 2), workers=2)
    queue.put(job("b", 1), workers=2)
    assert taken(queue, 2) == ["b1", "a2"]


def test_clients_long_gone_are_forgotten_past_a_thousand(monkeypatch):
    import layeringdiff.serve.jobs as jobs

    monkeypatch.setattr(jobs, "TURNS_KEPT", 3)
    queue = JobQueue()
    for owner in "abcde":
        queue.put(job(owner, 1), workers=1)
        queue.done(queue.take(lambda j: True, wait_s=0.01))
    assert len(queue.last_turn) <= 4
