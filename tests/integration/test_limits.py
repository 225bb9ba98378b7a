"""The backend's bounds against clients that misbehave: a real server process, real sockets, raw peers.

Time bounds are the docs' promises plus tests/timing.py's margin for a loaded machine (the soak benchmark prints the
real figures).
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import msgpack
import numpy as np
import psutil
import pytest
import zmq
from layering_protocol import (
    PROTOCOL_VERSION,
    Accepted,
    Echo,
    Error,
    ErrorCode,
    Ping,
    Pong,
    Result,
    Split,
    decode,
    encode,
)
from layeringdiff.client import BackendLost, Client
from layeringdiff.wire import from_array

from tests.conftest import BackendProcess, in_process_server
from tests.integration.rawpeer import RawPeer
from tests.integration.test_server import layer_and_mask
from tests.timing import LOADED_MARGIN_S
from tests.timing import STOP_S as STOP_PROMISE_S

STOP_S = STOP_PROMISE_S + LOADED_MARGIN_S


def pings_answered(endpoint: str, count: int = 5, timeout: float = 3.0) -> int:
    with Client(endpoint) as c:
        answered = 0
        for _ in range(count):
            try:
                answered += isinstance(c.request(Ping(1.0), timeout).message, Pong)
            except (TimeoutError, BackendLost):
                pass
        return answered


def stop_time(server: BackendProcess, sig: int = signal.SIGTERM) -> float:
    start = time.monotonic()
    server.proc.send_signal(sig)
    try:
        assert server.proc.wait(30) == 0
    finally:
        server.kill()
    return time.monotonic() - start


def logged(server: BackendProcess, text: str, timeout: float = 5.0) -> bool:
    """Whether the server logs `text` within `timeout` (its checks run a few times a second)."""
    deadline = time.monotonic() + timeout
    while text not in server.log and time.monotonic() < deadline:
        time.sleep(0.05)
    return text in server.log


def our_connections(endpoint: str) -> set[str]:
    """States of this process's TCP connections to the server."""
    port = int(endpoint.rsplit(":", 1)[1])
    me = psutil.Process()
    conns = me.net_connections("tcp") if hasattr(me, "net_connections") else me.connections("tcp")
    return {c.status for c in conns if c.raddr and c.raddr.port == port}


def monitored_dealer(ctx: zmq.Context, endpoint: str) -> tuple[zmq.Socket, zmq.Socket]:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    sock.connect(endpoint)
    return sock, monitor


def test_a_client_that_stops_reading_stalls_nobody():
    """It sends echo requests of 256 KB and never reads: the others are answered all along, it is cut off
    (its connection closed), and SIGTERM still stops the server at once."""
    server = BackendProcess("--client-backlog", "16M")
    ctx = zmq.Context()
    reader, monitor = monitored_dealer(ctx, server.endpoint)
    reader.setsockopt(zmq.RCVHWM, 2)
    reader.setsockopt(zmq.SNDTIMEO, 2000)
    try:
        frames = encode(Echo(from_array(np.zeros((256, 256, 4), np.float32), "u8", "RGBA")))
        sent = 0
        for _ in range(400):  # 100 MB of replies it will never read
            try:
                reader.send_multipart(frames, copy=False)
                sent += 1
            except zmq.Again:
                break
        assert sent >= 100
        assert pings_answered(server.endpoint, 10) == 10
        assert logged(server, "does not read its replies", 20)
        assert "its connection closed" in server.log
        # it does not read, so its libzmq never notices the hang-up: the kernel shows it (CLOSE_WAIT)
        deadline = time.monotonic() + 5
        while "ESTABLISHED" in our_connections(server.endpoint) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "ESTABLISHED" not in our_connections(server.endpoint), "its connection was not closed"
        assert server.log.count("cut off") == 1  # logged once
        assert pings_answered(server.endpoint, 5) == 5
        assert stop_time(server) < STOP_S
        assert "Traceback" not in server.log
    finally:
        reader.close(0)
        monitor.close(0)
        ctx.term()
        server.kill()


def test_sigterm_and_sigint_stop_a_server_stuck_in_a_step_that_cannot_be_interrupted(tmp_path):
    """A job inside one long call that never checks for cancel (here a sleep): the process leaves without it,
    and its client is told the backend is shutting down."""
    script = tmp_path / "stuck_server.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        import layeringdiff.server as server_module
        server_module.run_job = lambda *args: time.sleep(120)
        sys.exit(server_module.Server().run())
    """))
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, start_new_session=True)
        try:
            endpoint = proc.stdout.readline().split()[1]
            with Client(endpoint) as c:
                _, image, mask = layer_and_mask(64)
                job = c.send(Split(image, mask=mask))
                assert isinstance(c.recv(20).message, Accepted)
                time.sleep(0.5)  # in the stuck step now
                start = time.monotonic()
                proc.send_signal(sig)
                assert proc.wait(30) == 0
                assert time.monotonic() - start < STOP_S
                final = [e.message for e in c.events(job, 10)][-1]
                assert isinstance(final, Error) and final.code == ErrorCode.SHUTTING_DOWN
            assert "STOPPED" in proc.stdout.read()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_a_closed_stdout_does_not_break_the_stop():
    server = BackendProcess()
    server.proc.stdout.close()  # whoever started it is gone
    assert stop_time(server) < STOP_S
    assert "Traceback" not in server.log and "Exception" not in server.log


def test_messages_over_the_limits_are_answered_and_the_server_keeps_serving():
    server = BackendProcess("--max-pixels", "10000", "--max-message", "1M")
    try:
        with Client(server.endpoint) as c:
            # a frame far over --max-pixels (4 MB): answered with the pixel limit, not silence
            _, image, mask = layer_and_mask(1024)
            err = c.request(Split(image, mask=mask), timeout=20).message
            assert isinstance(err, Error) and err.code == ErrorCode.IMAGE_TOO_LARGE and "10000" in err.text
            # a header within the pixel limit, a frame over the byte limit
            spec = {"w": 50, "h": 50, "channels": 4, "dtype": "u8", "order": "RGBA"}
            header = msgpack.packb({"v": PROTOCOL_VERSION, "id": "big", "type": "echo", "body": {},
                                    "images": [["image", spec]]})
            c.send_raw([header, b"\0" * (2 << 20)])
            reply = c.recv(20)
            err = reply.message
            assert isinstance(err, Error) and err.code == ErrorCode.TOO_LARGE and reply.reply_to == "big"
            assert str(1 << 20) in err.text and str((2 << 20) + len(header)) in err.text
            # more frames than any request has
            c.send_raw([header] + [b"x" * 1000] * 50)
            err = c.recv(20).message
            assert isinstance(err, Error) and err.code == ErrorCode.FRAME_MISMATCH and "51 frames" in err.text
            assert isinstance(c.request(Ping(0.0)).message, Pong)
    finally:
        assert stop_time(server) < STOP_S


def test_an_unfinished_multipart_message_is_cut_off_before_it_grows():
    """libzmq keeps a multipart message until its last frame: a raw peer that never sends it must not grow
    the server without bound."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the in-flight check reads the kernel's TCP counters (Linux)")
    server = BackendProcess("--max-message", "8M", "--max-memory", "2G")
    try:
        rss = psutil.Process(server.proc.pid).memory_info().rss
        peer = RawPeer(server.endpoint)
        sent = 0
        with pytest.raises(OSError):  # the server hangs up
            for _ in range(1000):  # 1 GB if it were all taken
                peer.send_part(b"\0" * (1 << 20))
                sent += 1
        assert sent < 400
        assert peer.closed_by_server(5)
        peer.close()
        assert logged(server, "of a message not received yet")
        time.sleep(0.5)
        grown = psutil.Process(server.proc.pid).memory_info().rss - rss
        assert grown < 200 << 20, f"the server grew by {grown >> 20} MB"
        assert pings_answered(server.endpoint) == 5
    finally:
        assert stop_time(server) < STOP_S


def proc_status(pid: int, field: str) -> int:
    """A /proc/PID/status figure in bytes (VmRSS: now, VmHWM: the peak since the last reset)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for {pid}")


TINY_FRAMES = 1_000_000
TINY_FRAME = 16  # bytes: 16 MB in all, 16x --max-message 1M
ZMQ_MSG_BYTES = 64  # sizeof(zmq_msg_t): what libzmq holds for a frame this small until the message is complete
HELD_SLACK = 32 << 20  # the I/O threads' buffers, allocator rounding, the reply


def test_frames_past_a_messages_limits_are_dropped_as_they_are_received():
    """A raw peer sends, in pieces, a header and 1,000,000 frames of 16 bytes (a request has at most 3 frames, and
    16 MB is over --max-message 1M). libzmq holds a message whole until its last frame (64 bytes a frame this
    small), whatever the server does; the server's own share is what it keeps while taking the frames one by one:
    past the limits, nothing. Kept, each would be a Python object (about 0.6 KB: 600 MB here), so tiny frames
    show the difference that large ones, freed by libzmq or by the server at the same moment, would not."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the peak RSS (VmHWM, reset through clear_refs) is read from Linux's /proc")
    server = BackendProcess("--max-message", "1M")
    try:
        pid = server.proc.pid
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
        idle = proc_status(pid, "VmRSS")
        peer = RawPeer(server.endpoint)
        spec = {"w": 64, "h": 64, "channels": 4, "dtype": "u8", "order": "RGBA"}
        peer.send_part(msgpack.packb({"v": PROTOCOL_VERSION, "id": "many", "type": "echo", "body": {},
                                      "images": [["image", spec]]}))
        peer.send_parts(b"\0" * TINY_FRAME, TINY_FRAMES, last=True)
        reply = decode(peer.recv_message(60))
        peer.close()
        grown = proc_status(pid, "VmHWM") - idle
        err = reply.message
        assert isinstance(err, Error) and err.code == ErrorCode.FRAME_MISMATCH and reply.reply_to == "many"
        assert f"{TINY_FRAMES + 1} frames" in err.text
        bound = TINY_FRAMES * ZMQ_MSG_BYTES + HELD_SLACK
        assert grown < bound, f"the server's peak grew by {grown >> 20} MB (bound {bound >> 20} MB: libzmq's own)"
        with Client(server.endpoint) as c:  # and it serves a normal request after
            _, image, _ = layer_and_mask(64)
            echoed = c.request(Echo(image), 20).message
            assert bytes(echoed.image.data) == bytes(image.data)
    finally:
        assert stop_time(server) < STOP_S


def test_the_memory_budget_refuses_a_job_that_would_not_fit():
    server = BackendProcess("--max-memory", "1G")
    try:
        with Client(server.endpoint) as c:
            _, image, mask = layer_and_mask(4096)
            final, events = c.run(Split(image, mask=mask), timeout=60)
            err = final.message
            assert isinstance(err, Error) and err.code == ErrorCode.TOO_LARGE and err.job == final.reply_to
            assert "4096x4096" in err.text and "1.0 GB" in err.text and "--max-memory" in err.text
            assert not any(isinstance(e.message, Accepted) for e in events)  # refused before it is queued
            _, image, mask = layer_and_mask(256)
            assert isinstance(c.run(Split(image, mask=mask), timeout=120)[0].message, Result)
        assert psutil.Process(server.proc.pid).memory_info().rss < 1 << 30
    finally:
        assert stop_time(server) < STOP_S


def test_a_client_cannot_queue_more_than_its_jobs():
    server = BackendProcess("--max-client-jobs", "2")
    try:
        with Client(server.endpoint) as c, Client(server.endpoint) as other:
            _, image, mask = layer_and_mask(1024)
            jobs = [c.send(Split(image, mask=mask)) for _ in range(4)]
            first = {}
            while len(first) < 4:
                env = c.recv(60)
                if env.reply_to in jobs:
                    first.setdefault(env.reply_to, env.message)
            kinds = [type(first[j]) for j in jobs]
            assert kinds[:2] == [Accepted, Accepted]
            for job in jobs[2:]:
                assert isinstance(first[job], Error) and first[job].code == ErrorCode.BUSY
                assert "limit is 2" in first[job].text and first[job].job == job
            # another client still gets its job in
            _, small, small_mask = layer_and_mask(64)
            assert isinstance(other.run(Split(small, mask=small_mask), timeout=120)[0].message, Result)
    finally:
        assert stop_time(server) < STOP_S


def test_a_running_job_that_goes_over_the_budget_is_stopped(monkeypatch):
    """In process: the job takes the server over its budget while it runs (an estimate can be wrong)."""
    import layeringdiff.server as server_module
    from layeringdiff.server import ServerConfig

    held = []

    def greedy(message, progress, models):
        for _ in range(60):
            held.append(np.ones(16 << 20, np.uint8))  # 16 MB more each step
            progress("greedy", 0.5)
            time.sleep(0.05)
        raise AssertionError("never stopped")

    monkeypatch.setattr(server_module, "run_job", greedy)
    rss = psutil.Process().memory_info().rss
    try:
        with in_process_server(ServerConfig(max_memory=rss + (256 << 20))) as endpoint, Client(endpoint) as c:
            _, image, mask = layer_and_mask(64)
            final, _ = c.run(Split(image, mask=mask), timeout=60)
            assert isinstance(final.message, Error) and final.message.code == ErrorCode.TOO_LARGE
            assert "budget" in final.message.text
    finally:
        held.clear()


def test_peers_within_the_message_limit_together_over_the_budget_are_hung_up():
    if not sys.platform.startswith("linux"):
        pytest.skip("the in-flight check reads the kernel's TCP counters (Linux)")
    server = BackendProcess("--max-memory", "600M", "--max-message", "200M")  # hard limit 264 MB a message
    try:
        process = psutil.Process(server.proc.pid)
        peers = [RawPeer(server.endpoint), RawPeer(server.endpoint)]
        open_, peak = [True, True], 0
        for _ in range(250):  # 250 MB each, within the message limit; 500 MB together
            for i, peer in enumerate(peers):
                if open_[i]:
                    try:
                        peer.send_part(bytes(1 << 20))
                    except OSError:
                        open_[i] = False
            peak = max(peak, process.memory_info().rss)
        assert not all(open_)
        assert peak < (600 << 20) + (64 << 20), f"peak {peak >> 20} MB"
        assert logged(server, "the memory budget 600 MB")
        for peer in peers:
            peer.close()
        assert pings_answered(server.endpoint) == 5
    finally:
        assert stop_time(server) < STOP_S
