"""The backend's bounds against clients that misbehave: a real server process, real sockets, raw peers.

Time bounds are the docs' promises plus tests/timing.py's margin for a loaded machine (the soak benchmark prints the
real figures).
"""

import re
import signal
import struct
import sys
import threading
import time

import msgpack
import numpy as np
import psutil
import pytest
import zmq
from layering_protocol import (
    MAX_REQUEST_FRAMES,
    PROTOCOL_VERSION,
    Accepted,
    Echo,
    EchoReply,
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
from layeringdiff.limits import FRAMES_CUT_MARGIN
from layeringdiff.serve.server import CHECK_S
from layeringdiff.serve.transport import REPLY_STALL_PRESSED_S
from layeringdiff.wire import from_array

from tests.conftest import BackendProcess, ServerProcess, in_process
from tests.integration.rawpeer import (
    LONG,
    EchoHolders,
    FileLimitedBackend,
    Pinger,
    PingFlood,
    RawPeer,
    open_connections,
)
from tests.integration.test_server import layer_and_mask
from tests.timing import LOADED_MARGIN_S
from tests.timing import STOP_S as STOP_PROMISE_S

STOP_S = STOP_PROMISE_S + LOADED_MARGIN_S


def pings_answered(endpoint: str, count: int = 5, timeout: float = 3.0, **keys: str) -> int:
    with Client(endpoint, **keys) as c:
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


def test_a_client_that_reads_late_gets_every_reply_and_nothing_waits_after():
    """It sends 200 echo requests of 256 KB and reads nothing for a while: 50 MB of replies, far more than its
    pipe holds, wait in the server. Then it reads: every reply arrives, in order, and the server holds nothing more
    for it (no reply queued or in libzmq's hands, no peer waiting for room). The server runs in this process, so
    its bookkeeping is read directly."""
    with in_process() as server, zmq.Context() as ctx, ctx.socket(zmq.DEALER) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 2)
        sock.connect(server.endpoint)
        image = np.random.default_rng(0).integers(0, 256, (256, 256, 4), np.uint8)
        sent = [f"echo-{i}" for i in range(200)]
        for msg_id in sent:
            sock.send_multipart(encode(Echo(from_array(image, "u8", "RGBA")), msg_id), copy=False)
        deadline = time.monotonic() + 10
        while not server.transport.waiting and time.monotonic() < deadline:  # its pipe is full: replies wait
            time.sleep(0.01)
        assert server.transport.waiting
        time.sleep(0.5)
        got = []
        while len(got) < len(sent) and sock.poll(10_000):
            env = decode(sock.recv_multipart(), 1 << 30)
            assert isinstance(env.message, EchoReply) and env.message.image.data == image.tobytes()
            got.append(env.reply_to)
        assert got == sent
        (peer,) = server.transport.peers.values()

        def held() -> tuple:
            peer.settle()  # the replies libzmq is done with
            return (bool(server.transport.waiting), peer.cut, len(peer.queue), peer.queued_bytes, len(peer.sending),
                    peer.sending_bytes)

        deadline = time.monotonic() + 5
        while held() != (False, "", 0, 0, 0, 0) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert held() == (False, "", 0, 0, 0, 0)


def test_sigterm_and_sigint_stop_a_server_stuck_in_a_step_that_cannot_be_interrupted():
    """A job inside one long call that never checks for cancel (here a sleep): the server stops within its
    promise all the same, its worker killed and gone too, and the job's client is told it is shutting down."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        server = ServerProcess(job_runner="tests.integration.runners:stuck")
        try:
            workers = psutil.Process(server.proc.pid)
            with Client(server.endpoint) as c:
                _, image, mask = layer_and_mask(64)
                job = c.send(Split(image, mask=mask))
                assert isinstance(c.recv(20).message, Accepted)
                while getattr(c.recv(30).message, "stage", "") != "stuck":  # in the stuck step now
                    pass
                children = workers.children()
                assert len(children) >= 1
                start = time.monotonic()
                server.proc.send_signal(sig)
                assert server.proc.wait(30) == 0
                assert time.monotonic() - start < STOP_S
                final = [e.message for e in c.events(job, 10)][-1]
                assert isinstance(final, Error) and final.code == ErrorCode.SHUTTING_DOWN
            assert "STOPPED" in server.proc.stdout.read()
            # the worker was killed; multiprocessing's resource tracker ends once the server's end of its pipe
            # closes, so it may outlive the server by a moment
            _, left = psutil.wait_procs(children, timeout=5)
            left = [child for child in left if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
            assert not left, [" ".join(child.cmdline()) for child in left]
        finally:
            server.kill()


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
            assert err.text == (f"message of {(2 << 20) + len(header)} bytes, more than the backend's limit of "
                                f"{1 << 20} bytes")
            assert err.detail == "send a smaller layer, or raise the backend's --max-message"
            # as many frames as a request may have (3), over the byte limit: too large, not too many frames
            c.send_raw([header, b"\0" * (1 << 20), b"\0" * (1 << 20)])
            err = c.recv(20).message
            assert isinstance(err, Error) and err.code == ErrorCode.TOO_LARGE, err
            # more frames than any request has
            c.send_raw([header] + [b"x" * 1000] * 50)
            err = c.recv(20).message
            assert isinstance(err, Error) and err.code == ErrorCode.FRAME_MISMATCH
            assert err.text == "message has 51 frames, a request has at most 3 (its header describes 1 image frames)"
            assert isinstance(c.request(Ping(0.0)).message, Pong)
    finally:
        assert stop_time(server) < STOP_S


def test_the_byte_limit_is_exact_and_a_lone_frame_over_it_is_answered():
    """--max-message in bytes: a request of exactly that many bytes (all its frames) is served whole, one byte
    less of limit refuses it; a message of one frame over the limit (no image frames to drop) is answered too."""
    spec = {"w": 64, "h": 64, "channels": 4, "dtype": "u8", "order": "RGBA"}
    header = msgpack.packb({"v": PROTOCOL_VERSION, "id": "exact", "type": "echo", "body": {},
                            "images": [["image", spec]]})
    pixels = bytes(range(256)) * 64  # 64 x 64 x 4, not all equal: the echo must be the very bytes
    size = len(header) + len(pixels)
    for limit, served in ((size, True), (size - 1, False)):
        server = BackendProcess("--max-message", str(limit))
        try:
            with Client(server.endpoint) as c:
                c.send_raw([header, pixels])
                reply = c.recv(20)
                if served:
                    assert isinstance(reply.message, EchoReply), reply.message
                    assert reply.message.image.data.tobytes() == pixels
                else:
                    assert isinstance(reply.message, Error) and reply.message.code == ErrorCode.TOO_LARGE
                    assert reply.message.text == (f"message of {size} bytes, more than the backend's limit of "
                                                  f"{limit} bytes")
                # a lone frame, over the limit by itself: the header always reaches the answer
                c.send_raw([msgpack.packb({"v": PROTOCOL_VERSION, "id": "lone", "type": "ping",
                                           "body": {"time": 0.0, "pad": "x" * limit}, "images": []})])
                reply = c.recv(20)
                assert isinstance(reply.message, Error) and reply.message.code == ErrorCode.TOO_LARGE, reply.message
                assert reply.reply_to == "lone"
                assert isinstance(c.request(Ping(0.0)).message, Pong)
        finally:
            assert stop_time(server) < STOP_S


def test_a_client_sending_far_more_than_the_hard_limit_in_all_stays_connected():
    """The in-flight watch takes the bytes a connection sent that the loop has not received (the kernel's count
    less every frame's wire bytes the loop took) for an unfinished message: a client whose finished messages add up
    to more than the hard limit (here 65 MB: the 1 MB limit and its 64 MB margin) is never hung up for them."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the in-flight check reads the kernel's TCP counters (Linux)")
    server = BackendProcess("--max-message", "1M")
    spec = {"w": 1, "h": 1, "channels": 4, "dtype": "u8", "order": "RGBA"}
    try:
        with Client(server.endpoint) as c:
            for i in range(400):  # 100 MB in all: each header 250 kB (the header limit is 256 kB), its image 4 bytes
                header = msgpack.packb({"v": PROTOCOL_VERSION, "id": f"e{i}", "type": "echo",
                                        "body": {"pad": "x" * 250_000}, "images": [["image", spec]]})
                c.send_raw([header, bytes([i % 256]) * 4])
                reply = c.recv(20)
                assert reply.reply_to == f"e{i}", reply.message
            assert isinstance(c.request(Ping(0.0)).message, Pong)
            time.sleep(0.5)  # the watch looks every 10 ms
        assert cut_lines(server) == 0  # neither cut off nor its connection closed by the watch
    finally:
        assert stop_time(server) < STOP_S
    assert "Traceback" not in server.log


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


CUT_FRAMES = MAX_REQUEST_FRAMES + FRAMES_CUT_MARGIN  # docs/backend.md: more frames than this cut the sender off


def frames_message(frames: int, msg_id: str) -> list[bytes]:
    """An echo header followed by empty frames, `frames` in all."""
    spec = {"w": 64, "h": 64, "channels": 4, "dtype": "u8", "order": "RGBA"}
    header = msgpack.packb({"v": PROTOCOL_VERSION, "id": msg_id, "type": "echo", "body": {},
                            "images": [["image", spec]]})
    return [header] + [b""] * (frames - 1)


def cut_lines(server: BackendProcess) -> int:
    """Log lines that say a client was cut off or its connection closed."""
    return sum("cut off" in line or "closed the connection" in line for line in server.log.splitlines())


def test_a_message_far_over_the_frame_limit_cuts_its_sender_off():
    """Up to the margin past the frame limit a message is a client's mistake, answered frame_mismatch; one frame
    more and it is no mistake: the sender is cut off (its connection closed, logged once), not answered, and the
    rest of the message is dropped unread by anyone, also when its first image frame was over the byte limit."""
    server = BackendProcess("--max-message", "1M")
    try:
        peer = RawPeer(server.endpoint)
        for frame in frames_message(CUT_FRAMES - 1, "margin"):
            peer.send_part(frame)
        peer.send_part(b"", more=False)  # the last frame
        reply = decode(peer.recv_message(20))
        err = reply.message
        assert isinstance(err, Error) and err.code == ErrorCode.FRAME_MISMATCH and reply.reply_to == "margin"
        assert f"{CUT_FRAMES} frames" in err.text
        for frame in frames_message(CUT_FRAMES, "over"):
            peer.send_part(frame)
        peer.send_part(b"", more=False)
        assert peer.closed_by_server(10)  # no reply first: its replies are dropped
        peer.close()
        assert logged(server, f"more than {CUT_FRAMES} frames")
        assert cut_lines(server) == 1
        # its image frame over the byte limit (dropped, not kept), then the frames past the limit: cut off the same
        peer = RawPeer(server.endpoint)
        peer.send_part(frames_message(1, "big")[0])
        peer.send_part(b"\0" * (2 << 20))
        peer.send_parts(b"", CUT_FRAMES, last=True)
        assert peer.closed_by_server(10)
        peer.close()
        assert logged(server, "frames (2 MB) of the message") and cut_lines(server) == 2
        assert pings_answered(server.endpoint) == 5
    finally:
        assert stop_time(server) < STOP_S
    assert "Traceback" not in server.log


FLOOD_FRAMES = 1_000_000
FLOOD_PIECE = 50_000  # frames a piece, one piece every 10 ms: 1M frames in about a quarter of a second
FLOOD_PING_S = 0.25  # docs/backend.md: other clients' pings wait at most this long while one floods the server


def test_an_empty_frame_flood_delays_nobody_and_its_sender_is_cut_off():
    """One message of 1,000,000 empty frames (2 bytes each on the wire, 64 bytes each in libzmq until the last),
    sent in pieces while another client pings every 50 ms: the pings are answered all along, the flooder is cut
    off before its message is complete, and SIGTERM still stops the server at once."""
    server = BackendProcess()
    try:
        with Pinger(server.endpoint) as pinger:
            peer = RawPeer(server.endpoint)
            peer.send_part(frames_message(1, "flood")[0])
            sent = peer.flood(b"", FLOOD_FRAMES, last=True, piece=FLOOD_PIECE, pause=0.01)
            assert peer.closed_by_server(10), f"not cut off after {sent} frames"
            peer.close()
            time.sleep(0.5)  # pings after the cut-off too
        assert pinger.pings > 5
        assert pinger.worst < FLOOD_PING_S + LOADED_MARGIN_S, f"a ping waited {pinger.worst:.2f} s"
        assert logged(server, "frames")
        assert cut_lines(server) == 1
    finally:
        assert stop_time(server) < STOP_S
    assert "Traceback" not in server.log


BURST_FRAMES = 150_000  # 0.3 MB in one write: most often whole in libzmq before the in-flight watch looks


def test_a_burst_of_empty_frames_whole_before_the_watch_looks_is_dropped_by_the_loop():
    """A message of 150,000 empty frames in one write is most often complete before the in-flight watch acts, so the
    loop receives its rest (libzmq hands out nothing else first) and drops it; the sender is cut off, another
    client's pings wait at most the flood bound (pyzmq alone took 0.4-0.6 s: the compiled dropper ~0.05 s)."""
    server = BackendProcess()
    try:
        with Pinger(server.endpoint) as pinger:
            time.sleep(0.2)
            peer = RawPeer(server.endpoint)
            peer.send_part(frames_message(1, "burst")[0])
            peer.flood(b"", BURST_FRAMES, last=True, piece=BURST_FRAMES)
            assert peer.closed_by_server(10)
            peer.close()
            time.sleep(0.5)
        assert pinger.worst < FLOOD_PING_S + LOADED_MARGIN_S, f"a ping waited {pinger.worst:.2f} s"
        assert logged(server, "frames")
        assert cut_lines(server) == 1
        assert pings_answered(server.endpoint) == 5
    finally:
        assert stop_time(server) < STOP_S
    assert "Traceback" not in server.log


UNFINISHED_FRAMES = 6_500_000  # 13 MB on the wire, 420 MB in libzmq if it were all taken
# the watch's slack (8 MB) and what libzmq takes in while a loaded machine's watch waits for a core (~10M tiny
# frames a second, 64 bytes each: 64 MB in 0.1 s)
HELD_BOUND = 128 << 20
RSS_BACK = 16 << 20  # the RSS once the message is freed, over its idle figure


def test_an_unfinished_message_of_empty_frames_is_hung_up_by_what_it_holds():
    """A raw peer sends 6,500,000 empty frames of one message and never its last: few bytes on the wire, but
    libzmq keeps 64 bytes for each until the message ends. The server hangs it up (logged) while its memory has
    grown by less than HELD_BOUND, and its RSS comes back near the idle figure."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the in-flight check reads the kernel's TCP counters, the peak RSS /proc (Linux)")
    server = BackendProcess("--max-memory", "1500M")
    try:
        pid = server.proc.pid
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
        idle = proc_status(pid, "VmRSS")
        peer = RawPeer(server.endpoint)
        peer.send_part(frames_message(1, "unfinished")[0])
        sent = peer.flood(b"", UNFINISHED_FRAMES)
        assert sent < UNFINISHED_FRAMES, "the server took all of it"
        assert peer.closed_by_server(10)
        peer.close()
        assert logged(server, "frames of a message not received yet")
        grown = proc_status(pid, "VmHWM") - idle
        assert grown < HELD_BOUND, f"the server grew by {grown >> 20} MB before it hung up"
        deadline = time.monotonic() + 5
        while proc_status(pid, "VmRSS") - idle > RSS_BACK and time.monotonic() < deadline:
            time.sleep(0.1)
        back = proc_status(pid, "VmRSS") - idle
        assert back < RSS_BACK, f"the RSS stayed {back >> 20} MB over its idle figure"
        assert cut_lines(server) == 1
        assert pings_answered(server.endpoint) == 5
    finally:
        assert stop_time(server) < STOP_S


UPLOAD_SIDE = 4096  # a legitimate echo of 64 MB (RGBA u8), sent in 1 MB pieces, 10 ms apart
UPLOAD_STALL_S = 0.5  # after its first piece, as over a network
FLOODERS = 4


def test_a_request_arriving_during_a_tiny_frame_flood_is_answered():
    """A large echo is on its way (slowly, as over a network, and stalled after its first megabyte) when four raw
    peers start unfinished messages of empty frames: the growth is theirs (their bytes could hold just that; the
    upload's bytes, 32 MB of room, hold their own), so the four are hung up and the upload is answered."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the in-flight check reads the kernel's TCP counters (Linux)")
    server = BackendProcess()
    flooders: list[threading.Thread] = []
    try:
        upload = RawPeer(server.endpoint)
        spec = {"w": UPLOAD_SIDE, "h": UPLOAD_SIDE, "channels": 4, "dtype": "u8", "order": "RGBA"}
        upload.send_part(msgpack.packb({"v": PROTOCOL_VERSION, "id": "upload", "type": "echo", "body": {},
                                        "images": [["image", spec]]}))
        size = UPLOAD_SIDE * UPLOAD_SIDE * 4
        upload.sock.sendall(bytes([LONG]) + struct.pack(">Q", size))  # one frame, its bytes to follow
        piece = bytes(1 << 20)

        def flood() -> None:
            peer = RawPeer(server.endpoint)
            peer.send_part(b"header")
            peer.flood(b"", UNFINISHED_FRAMES)
            peer.close()

        for sent in range(0, size, len(piece)):
            upload.sock.sendall(piece)
            time.sleep(0.01)
            if not sent:  # the upload began first (its reckoning sees all the flooders' growth), and stalls a while
                flooders = [threading.Thread(target=flood, daemon=True) for _ in range(FLOODERS)]
                for thread in flooders:
                    thread.start()
                time.sleep(UPLOAD_STALL_S)
        reply = decode(upload.recv_message(60))
        assert isinstance(reply.message, EchoReply) and reply.reply_to == "upload"
        upload.close()
        for thread in flooders:
            thread.join(30)
        assert logged(server, "frames of a message not received yet")
        deadline = time.monotonic() + 5
        while server.log.count("frames of a message not received yet") < FLOODERS and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.log.count("frames of a message not received yet") == FLOODERS
        assert cut_lines(server) == FLOODERS  # the upload's connection was not closed
    finally:
        assert stop_time(server) < STOP_S


FLOOD_FILES = 256  # the open-files limit the server runs under (soft and hard: it cannot raise it)
FLOOD_CONNECTIONS = 600


@pytest.mark.parametrize("keys", [False, True], ids=["loopback", "keys"])
def test_a_connection_flood_under_a_low_open_files_limit_leaves_the_server_serving(keys, curve_keys):
    """600 idle TCP connections against a server allowed 256 open files: it keeps its descriptors' reserve (the
    oldest idle connections are closed as newcomers come), so it neither dies on EMFILE (its /proc reads, its
    log, its keys folder) nor stops letting clients in: a real client's pings are answered during the flood and
    after it."""
    if not sys.platform.startswith("linux"):
        pytest.skip("open-files limits of a child (POSIX), the in-flight watch (Linux)")
    auth = {"server_key": str(curve_keys / "server.key"),
            "client_key": str(curve_keys / "secrets" / "alice.key_secret")} if keys else {}
    server = FileLimitedBackend(FLOOD_FILES, *(("--keys", str(curve_keys)) if keys else ()))
    socks = []
    try:
        socks = open_connections(server.endpoint, FLOOD_CONNECTIONS)
        assert len(socks) == FLOOD_CONNECTIONS
        assert logged(server, "the most the backend keeps", 10)
        assert server.proc.poll() is None
        assert pings_answered(server.endpoint, 3, 10, **auth) == 3
        for sock in socks:
            sock.close()
        socks = []
        time.sleep(1)
        assert server.proc.poll() is None
        assert pings_answered(server.endpoint, 3, 10, **auth) == 3
    finally:
        for sock in socks:
            sock.close()
        assert stop_time(server) < STOP_S
    assert "Traceback" not in server.log
    # a file it could not open at the limit (its keys folder, /proc) is logged once as outlived, never more
    assert all("goes on serving" in line for line in server.log.splitlines() if "Too many open files" in line)


def test_a_flood_of_connections_that_each_sent_a_ping_closes_its_own_not_a_newcomers():
    """Connections that each sent a message are not closed before silent ones: a flood of them from one host
    (one key, with keys) used to fill the cap, and every newcomer, silent when accepted, was closed at once. The
    connections over the cap now come from the source that holds the most."""
    if not sys.platform.startswith("linux"):
        pytest.skip("open-files limits of a child (POSIX); 127.0.0.2 is loopback (Linux)")
    server = FileLimitedBackend(FLOOD_FILES)
    try:
        with PingFlood(server.endpoint, FLOOD_CONNECTIONS // 2):  # more than the cap (about 150 here)
            assert logged(server, "the most the backend keeps", 20)
            time.sleep(1)  # the flood's pings answered by now: its connections have all sent a message
            assert pings_answered(server.endpoint, 3, 10) == 3
            with Client(server.endpoint) as c:
                _, image, mask = layer_and_mask(64)
                assert isinstance(c.run(Split(image, mask=mask), timeout=60)[0].message, Result)
    finally:
        assert stop_time(server) < STOP_S
    assert "Traceback" not in server.log


ECHO_SIDE = 5000  # 100 MB of RGBA a reply: under the 1 GB budget's message limit (128 MB)


def test_clients_that_never_take_their_replies_do_not_hold_the_memory_jobs_need():
    """Raw connections that each ask for a large echo, then read nothing (their heartbeats keep them open):
    each reply may be in transit, and together they held the memory budget, so every other client's job was
    refused too_large. A client whose replies stand still is cut off when a job needs what they hold."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the kernel's count of acknowledged bytes (Linux)")
    server = BackendProcess("--max-memory", "1G")
    try:
        with EchoHolders(server.endpoint, ECHO_SIDE, int(0.85 * (1 << 30)), server.proc.pid):
            rss = psutil.Process(server.proc.pid).memory_info().rss
            assert rss >= 0.85 * (1 << 30), rss >> 20  # the budget is held
            time.sleep(REPLY_STALL_PRESSED_S + 1)
            with Client(server.endpoint) as c:
                _, small, mask = layer_and_mask(256)
                reply = c.run(Split(small, mask=mask), timeout=120)[0].message
                assert isinstance(reply, Result), reply
            assert logged(server, "it has taken nothing of its replies", 5)
            assert pings_answered(server.endpoint, 2, 10) == 2
    finally:
        assert stop_time(server) < STOP_S
    assert "Traceback" not in server.log


def test_the_memory_budget_refuses_a_job_that_would_not_fit():
    server = BackendProcess("--max-memory", "1G")
    try:
        process = psutil.Process(server.proc.pid)
        time.sleep(CHECK_S * 2)  # the server's idle memory is looked at again by now
        idle = process.memory_info().rss + sum(p.memory_info().rss for p in process.children(recursive=True))
        with Client(server.endpoint) as c:
            _, image, mask = layer_and_mask(4096)
            final, events = c.run(Split(image, mask=mask), timeout=60)
            err = final.message
            assert isinstance(err, Error) and err.code == ErrorCode.TOO_LARGE and err.job == final.reply_to
            assert "4096x4096" in err.text and "1.0 GB" in err.text and "--max-memory" in err.text
            # what is in use: the server's and its worker's memory, both
            in_use = re.search(r", (\d+) MB of it in use$", err.text)
            assert in_use and 0.8 * idle < int(in_use[1]) << 20 < 1.25 * idle, (err.text, idle >> 20)
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
