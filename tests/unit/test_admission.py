"""A job's admission (serve/jobs.admit) and the limits' small helpers, each bound at its exact edge: the numbers
are worked out here from the rules in limits.py's and jobs.py's docstrings."""

import psutil
import pytest
from layering_protocol import ErrorCode, Image, ProtocolError, Split
from layeringdiff.job_memory import estimate_job
from layeringdiff.limits import (
    CONNECTIONS,
    MIN_CONNECTIONS,
    RESERVED_FILES,
    Limits,
    connection_cap,
    gib,
)
from layeringdiff.serve.jobs import Job, JobQueue, admit, too_large

SPLIT = Split(Image(8, 8, "RGBA", "u8", bytes(256)), box=[1, 1, 6, 6])
LEAST = estimate_job(SPLIT, weights=lambda name: 0, on_gpu=True).nbytes  # what admission counts for it


def limits(**kw):
    values = {"max_pixels": 1 << 20, "max_memory": 1 << 40, "max_message": 1 << 20, "hard_message": 2 << 20,
              "client_jobs": 2, "jobs": 3, "queued_input": 1000, "client_backlog_bytes": 1 << 20,
              "client_backlog_messages": 10, **kw}
    return Limits(**values)


def job(owner="a", n=1, input_bytes=100, cancelled=False):
    j = Job(f"{owner}{n}", owner.encode(), SPLIT, owner=owner, input_bytes=input_bytes)
    if cancelled:
        j.cancel.set()
    return j


def table(*jobs):
    return {(j.identity, j.id): j for j in jobs}


def refused(new, jobs, queued=(), lim=None, in_use=0):
    with pytest.raises(ProtocolError) as info:
        admit(new, table(*jobs), queued, lim or limits(), in_use)
    return info.value


def test_a_job_id_in_use_by_the_same_client_is_refused_another_clients_is_not():
    old = job("a", 1)
    err = refused(job("a", 1), [old])
    assert err.code == ErrorCode.BAD_MESSAGE and err.text == "job id a1 is already in use"
    admit(Job("a1", b"b", SPLIT, owner="b"), table(old), (), limits(), 0)  # the same id, another connection
    long = Job("i" * 100, b"a", SPLIT, owner="a")
    err = refused(Job("i" * 100, b"a", SPLIT, owner="a"), [long])
    assert err.text == "job id " + "i" * 25 + "... (100 chars) is already in use"  # cut to 40 characters


def test_a_client_may_have_client_jobs_live_and_cancelled_ones_do_not_count():
    admit(job("a", 2), table(job("a", 1)), (), limits(), 0)  # 1 of 2
    err = refused(job("a", 3), [job("a", 1), job("a", 2)])
    assert err.code == ErrorCode.BUSY and err.text == "this client has 2 jobs queued or running, the limit is 2"
    assert err.detail == "wait for one to finish, or cancel one"
    admit(job("a", 3), table(job("a", 1), job("a", 2, cancelled=True)), (), limits(), 0)
    admit(job("b", 1), table(job("a", 1), job("a", 2)), (), limits(), 0)  # another client's own count


def test_the_backend_takes_jobs_live_in_all():
    three = [job("a", 1), job("b", 1), job("c", 1)]
    err = refused(job("d", 1), three)
    assert err.code == ErrorCode.BUSY and err.text == "the backend has 3 jobs queued or running, the limit is 3"
    assert err.detail == "try again in a while"
    admit(job("d", 1), table(job("a", 1), job("b", 1)), (), limits(), 0)
    admit(job("d", 1), table(*three[:2], job("c", 1, cancelled=True)), (), limits(), 0)


def test_queued_images_may_reach_the_limit_exactly():
    queued = [job("b", 1, 400), job("c", 1, 500)]
    admit(job("a", 1, 100), {}, queued, limits(), 0)  # 1000 of 1000
    err = refused(job("a", 1, 101), [], queued)
    assert err.code == ErrorCode.BUSY and err.text.startswith("the queued jobs' images would take")
    assert err.detail == "try again when the queue is shorter"
    admit(job("a", 1, 101), {}, [queued[0], job("c", 1, 500, cancelled=True)], limits(), 0)


def test_one_client_past_its_first_queued_job_may_hold_half_the_queued_images_room():
    """One client (or one key) with a big job queued cannot queue another that leaves the others no room; its
    first queued job may take all of it, and another client's job then still fits what is left."""
    admit(job("a", 2, 1000), {}, [], limits(), 0)  # a first queued job: the whole room
    admit(job("a", 2, 200), {}, [job("a", 1, 300)], limits(), 0)  # 500 of the 500 a client may hold
    err = refused(job("a", 2, 201), [], [job("a", 1, 300)])
    assert err.code == ErrorCode.BUSY and err.text == ("this client's queued jobs' images would take 0 MB, more "
                                                       "than its share of 0 MB (the backend's other clients keep "
                                                       "room)")
    assert err.detail == "wait for one of them to start"
    admit(job("a", 2, 201), {}, [job("a", 1, 300, cancelled=True)], limits(), 0)
    admit(job("b", 1, 400), {}, [job("a", 1, 300), job("a", 2, 200)], limits(), 0)  # another client: room left
    err = refused(job("b", 1, 501), [], [job("a", 1, 300), job("a", 2, 200)])
    assert err.text.startswith("the queued jobs' images would take")  # the room of all is still the limit


def test_the_least_memory_a_job_needs_must_fit_what_the_budget_leaves():
    admit(job(), {}, (), limits(max_memory=LEAST + 5000), 5000)  # exactly what is left
    err = refused(job(), [], lim=limits(max_memory=LEAST + 5000), in_use=5001)
    assert err.code == ErrorCode.TOO_LARGE and err.text.startswith("a 8x8 split needs about")
    assert err.text.endswith("(--max-memory), 0 MB of it in use")


def test_too_large_says_what_needs_how_much_of_which_budget():
    err = too_large("a 4096x4096 split", 3 << 30, 2 << 30, 512 << 20)
    assert err.code == ErrorCode.TOO_LARGE
    assert err.text == ("a 4096x4096 split needs about 3.0 GB of memory; the backend's budget is 2.0 GB "
                        "(--max-memory), 512 MB of it in use")
    assert err.detail == "split a smaller layer or a selection of it, or raise the backend's --max-memory"


@pytest.mark.parametrize("nbytes,text", [(0, "0 MB"), ((1 << 30) - (1 << 20), "1023 MB"), (1 << 30, "1.0 GB"),
                                         (3 << 29, "1.5 GB"), (5 << 19, "2 MB"), (1 << 20, "1 MB")])
def test_gib(nbytes, text):
    assert gib(nbytes) == text


def test_connections_under_an_open_files_limit_keep_descriptors_in_reserve():
    assert connection_cap(1024, 100) == 1024 - 100 - RESERVED_FILES
    assert connection_cap(1 << 20, 100) == CONNECTIONS
    assert connection_cap(1 << 20, 100, wanted=10) == 10
    assert connection_cap(100, 90) == MIN_CONNECTIONS  # never none
    assert connection_cap(100 + RESERVED_FILES + MIN_CONNECTIONS + 1, 100) == MIN_CONNECTIONS + 1


def test_limits_describe_themselves_and_follow_the_arguments_given():
    lim = Limits.make(max_pixels=1000, max_memory=8 << 30, max_message=3 << 20, client_jobs=5, jobs=9,
                      client_backlog=7 << 20)
    assert (lim.max_message, lim.client_jobs, lim.jobs, lim.client_backlog_bytes) == (3 << 20, 5, 9, 7 << 20)
    assert lim.hard_message == (3 << 20) + (64 << 20)
    assert lim.describe() == ("memory 8.0 GB, message 3 MB, 1000 pixels, 5 jobs a client, 9 in all, client backlog "
                              f"7 MB, {CONNECTIONS} connections")
    assert Limits.make().max_memory == int(psutil.virtual_memory().total * 0.75)
    huge = Limits.make(max_memory=8 << 30, max_message=1 << 30)
    assert huge.hard_message == (1 << 30) + (1 << 28)  # a quarter more past 256 MB


def test_a_job_stops_for_its_first_reason_and_drops_its_images():
    j = job(input_bytes=300)
    j.frames = [b"x"]
    j.stop("shutting_down", "the backend is stopping")
    j.stop("cancelled", "later")
    assert j.cancel.is_set() and j.why == ("shutting_down", "the backend is stopping")
    j.drop()
    assert j.message is None and j.frames is None and j.input_bytes == 0


def test_a_finished_job_leaves_the_running_set_and_closing_empties_the_queue():
    queue = JobQueue()
    first, second = job("a", 1), job("b", 1)
    queue.put(first, workers=1)
    queue.put(second, workers=1)
    taken = queue.take(lambda j: True, wait_s=0.01)
    assert taken is first and queue.running == {first}
    assert queue.put(job("c", 1), workers=1) == 2  # the running one and b's start before it
    queue.done(first)
    assert queue.running == set()
    left = queue.close()
    assert [j.id for j in left] == ["b1", "c1"] and queue.waiting == {} and queue.last_turn == {}
    assert queue.take(lambda j: True, wait_s=0.01) is None and queue.queued() == []


def test_admission_counts_no_models_weights_and_no_cpu_work_for_them():
    """The least a job can need: models already loaded (0 bytes) on a GPU (their working memory not the server's);
    the worker checks the full figure when it takes the job."""
    phrase = Split(Image(64, 64, "RGBA", "u8", bytes(64 * 64 * 4)), phrase="a cat")
    least = estimate_job(phrase, weights=lambda name: 0, on_gpu=True).nbytes
    assert estimate_job(phrase).nbytes > least and estimate_job(phrase, lambda name: 0).nbytes > least
    j = Job("p", b"a", phrase, owner="a")
    admit(j, {}, (), limits(max_memory=least), 0)  # fits exactly what the least needs


def test_limits_made_from_a_budget_are_whole_bytes():
    lim = Limits.make(max_pixels=1000, max_memory=(8 << 30) + 7)
    assert all(isinstance(v, int) for v in (lim.max_message, lim.hard_message, lim.queued_input))
    assert lim.client_backlog_messages == 4096
    odd = Limits.make(max_pixels=10**9, max_memory=(1 << 33) + 13)  # a message of 2^30 + 1 bytes: not whole quarters
    assert odd.max_message == ((1 << 33) + 13) // 8 and isinstance(odd.max_message, int)
    assert odd.hard_message == odd.max_message + odd.max_message // 4 and isinstance(odd.hard_message, int)


def test_a_share_of_the_memory_may_be_under_one_percent_and_a_bad_one_says_so():
    from layeringdiff.limits import parse_size

    assert parse_size("0.5%", 1000) == 5
    with pytest.raises(ValueError) as info:
        parse_size("x%", 1000)
    assert str(info.value) == "'x%': a share must be between 0 and 100%"


def test_forgetting_old_turns_keeps_clients_that_wait_or_run(monkeypatch):
    import layeringdiff.serve.jobs as jobs

    monkeypatch.setattr(jobs, "TURNS_KEPT", 2)
    queue = JobQueue()
    for owner in "ab":  # two turns remembered: exactly the limit, nothing forgotten yet
        queue.put(job(owner, 1), workers=1)
        queue.done(queue.take(lambda j: True, wait_s=0.01))
    assert set(queue.last_turn) == {"a", "b"}
    queue.put(job("c", 1), workers=1)
    running = queue.take(lambda j: True, wait_s=0.01)  # c runs
    queue.put(job("d", 1), workers=1)
    queue.put(job("d", 2), workers=1)
    queue.take(lambda j: True, wait_s=0.01)  # d's first: d still waits with its second
    # past the limit: the clients with nothing waiting or running (a, b) are forgotten, c (running) and d (waiting)
    assert set(queue.last_turn) == {"c", "d"} and running.owner == "c"
