"""The transport's frame dropper on real sockets: the compiled loop (libzmq called from numba) and pyzmq's loop
drop the same frames, stop at the message's end or the budget, and leave the next message whole."""

import sys
import time

import pytest
import zmq
from layeringdiff.serve.drain import FrameDropper

FRAMES = 200_000


@pytest.fixture
def pair():
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    for sock in (router, dealer):
        sock.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.RCVHWM, 0)
    dealer.setsockopt(zmq.SNDHWM, 0)
    dealer.connect(f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}")
    yield router, dealer
    router.close()
    dealer.close()
    ctx.term()


def test_the_compiled_loop_is_used_on_linux(pair):
    if not sys.platform.startswith("linux"):
        pytest.skip("libzmq is found in /proc/self/maps")
    assert FrameDropper(pair[0], 100).compiled


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "pyzmq"])
def test_the_rest_of_a_message_is_dropped_in_turns_and_the_next_one_is_whole(pair, fast):
    router, dealer = pair
    drop = FrameDropper(router, 1000, fast=fast)
    for i in range(FRAMES - 1):
        dealer.send(b"ab" if i % 2 else b"", zmq.SNDMORE)
    dealer.send(b"end")
    dealer.send_multipart([b"next", b"message"])
    assert router.poll(10_000)
    router.recv()  # the sender's identity
    first = router.recv()  # the first frame, as the loop receives it before it drains
    assert first == b""
    frames, nbytes, more = drop(5000)
    assert (frames, more) == (5000, True)
    assert nbytes == 2 * 2500
    done, total = frames + 1, nbytes
    while more:
        frames, nbytes, more = drop(drop.turn_frames)
        assert frames <= drop.turn_frames
        done, total = done + frames, total + nbytes
    assert done == FRAMES
    assert total == 2 * (FRAMES // 2) + 3 - 2  # the "ab"s, then "end" in the place of the last "ab"
    deadline = time.monotonic() + 10
    while not router.poll(100) and time.monotonic() < deadline:
        pass
    assert router.recv_multipart()[1:] == [b"next", b"message"]


@pytest.mark.parametrize("fast", [True, False], ids=["compiled", "pyzmq"])
def test_a_message_that_ends_within_the_budget_stops_there(pair, fast):
    router, dealer = pair
    drop = FrameDropper(router, 1000, fast=fast)
    dealer.send_multipart([b"head", b"x" * 10, b"y" * 300_000])
    dealer.send_multipart([b"after"])
    assert router.poll(10_000)
    router.recv()
    router.recv()
    assert drop(1000) == (2, 300_010, False)
    assert router.poll(10_000)
    assert router.recv_multipart()[1:] == [b"after"]
