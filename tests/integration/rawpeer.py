"""A peer that speaks ZMTP 3.0 (NULL mechanism) over a plain TCP socket, so a test can do what libzmq never
does: send part of a multipart message and stop, or send frames slowly; and the other misbehaving parties
the limit tests and the soak benchmark share (a connection flood, a server under a low open-files limit, a
client that pings all along)."""

import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import psutil
import zmq
from layering_protocol import Echo, Ping, encode
from layeringdiff.client import BackendLost, Client
from layeringdiff.wire import from_array

from tests.conftest import BackendProcess, child_env

MORE, LONG, COMMAND = 1, 2, 4


def _frame(body: bytes, flags: int = 0) -> bytes:
    if len(body) > 255:
        return bytes([flags | LONG]) + struct.pack(">Q", len(body)) + body
    return bytes([flags, len(body)]) + body


class RawPeer:
    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        greeting = b"\xff" + b"\0" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\0") + b"\0" + b"\0" * 31
        self.sock.sendall(greeting)
        self._read(64)
        ready = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
        self.sock.sendall(_frame(ready, COMMAND))
        self._read_frame()  # the server's READY

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        return data

    def _read_frame(self) -> tuple[int, bytes]:
        flags = self._read(1)[0]
        size = struct.unpack(">Q", self._read(8))[0] if flags & LONG else self._read(1)[0]
        return flags, self._read(size)

    def send_part(self, body: bytes, more: bool = True) -> None:
        self.sock.sendall(_frame(body, MORE if more else 0))

    def send_parts(self, body: bytes, count: int, last: bool = False, piece: int = 1 << 16) -> None:
        """`count` frames of `body`, written `piece` frames at a time; the last one ends the message if `last`."""
        for start in range(0, count, piece):
            n = min(piece, count - start)
            ends = last and start + n == count
            self.sock.sendall(_frame(body, MORE) * (n - ends) + (_frame(body) if ends else b""))

    def flood(self, body: bytes, count: int, last: bool = False, piece: int = 1 << 16, pause: float = 0.0,
              stuck: float = 2.0) -> int:
        """send_parts that stops when the server hangs up: a send that fails, or that finds no room for `stuck`
        seconds (a server that shut its side down may leave the window closed). Returns the frames sent."""
        self.sock.settimeout(stuck)
        for start in range(0, count, piece):
            n = min(piece, count - start)
            ends = last and start + n == count
            try:
                self.sock.sendall(_frame(body, MORE) * (n - ends) + (_frame(body) if ends else b""))
            except OSError:  # a reset, a broken pipe, or no room (TimeoutError)
                return start
            if pause:
                time.sleep(pause)
        return count

    def recv_message(self, timeout: float) -> list[bytes]:
        """The next message's frames; the server's heartbeats (PING commands) are answered on the way, as libzmq
        would, so a long wait does not get the connection dropped."""
        self.sock.settimeout(timeout)
        frames = []
        while True:
            flags, body = self._read_frame()
            if flags & COMMAND:
                if body.startswith(b"\x04PING"):  # name, TTL (2 bytes), context: PONG echoes the context
                    self.sock.sendall(_frame(b"\x04PONG" + body[7:], COMMAND))
                continue
            frames.append(body)
            if not flags & MORE:
                return frames

    def closed_by_server(self, timeout: float) -> bool:
        """True once the server has shut the connection (reads EOF or a reset)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                flags, _ = self._read_frame()  # heartbeats and replies are skipped
        except (ConnectionError, OSError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def open_connections(endpoint: str, count: int) -> list[socket.socket]:
    """`count` plain TCP connections to the server that never say a word (connected without waiting: those the
    server's backlog cannot take yet complete later, or never)."""
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect((host, int(port)))
        except BlockingIOError:
            pass
        except OSError:  # this process's own descriptors or ports ran out: the flood is as large as it gets
            sock.close()
            break
        socks.append(sock)
    return socks


class FileLimitedBackend(BackendProcess):
    """`layeringdiff serve` started with an open-files limit of `files` (soft and hard, so the server cannot
    raise it), set in the child before it runs (the prlimit binary is not always usable)."""

    def __init__(self, files: int, *args: str) -> None:
        import resource  # POSIX: the tests that use this run on Linux

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "layeringdiff", "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=child_env(PYTHONUNBUFFERED="1"), start_new_session=True, preexec_fn=limit)
        self._log: list[str] = []
        self._log_reader = threading.Thread(target=lambda: self._log.extend(self.proc.stderr), daemon=True)
        self._log_reader.start()
        self.endpoint = self._wait_ready(60)


class Pinger(threading.Thread):
    """A client that pings every `every` seconds while another misbehaves; `worst` is the longest a pong took
    (a ping left unanswered for `timeout` counts as `timeout`)."""

    def __init__(self, endpoint: str, every: float = 0.05, timeout: float = 20.0, **keys: Any) -> None:
        super().__init__(name="pinger", daemon=True)
        self.endpoint, self.every, self.timeout, self.keys = endpoint, every, timeout, keys
        self.worst = 0.0
        self.pings = 0
        self.done = threading.Event()
        self.started = threading.Event()

    def run(self) -> None:
        with Client(self.endpoint, **self.keys) as client:
            client.request(Ping(0.0), self.timeout)  # connected before the misbehaviour starts
            self.started.set()
            while not self.done.is_set():
                start = time.monotonic()
                try:
                    client.request(Ping(0.0), self.timeout)
                except (TimeoutError, BackendLost):
                    pass
                self.worst = max(self.worst, time.monotonic() - start)
                self.pings += 1
                time.sleep(self.every)

    def __enter__(self) -> "Pinger":
        self.start()
        self.started.wait(30)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.done.set()
        self.join(self.timeout + 5)


class PingFlood:
    """`count` libzmq connections from another loopback address (127.0.0.2: another host to the server), each
    of which sends a ping and stays (libzmq answers the heartbeats and reconnects when closed)."""

    def __init__(self, endpoint: str, count: int, source: str = "127.0.0.2") -> None:
        self.endpoint, self.count, self.source = endpoint, count, source
        self.ctx = zmq.Context()
        self.ctx.set(zmq.MAX_SOCKETS, count + 16)  # libzmq's default is 1023 sockets a context
        self.socks: list[zmq.Socket] = []

    def __enter__(self) -> "PingFlood":
        host, port = self.endpoint.removeprefix("tcp://").rsplit(":", 1)
        for _ in range(self.count):
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(f"tcp://{self.source}:0;{host}:{port}")
            sock.send_multipart(encode(Ping(0.0)))
            self.socks.append(sock)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sock in self.socks:
            sock.close()
        self.ctx.term()


class EchoHolders:
    """Raw connections that each send an echo of a `side` x `side` RGBA image and then read nothing, their
    connections kept open by heartbeats they send (a tiny receive buffer, so their replies stand still at once):
    opened until the server's RSS reaches `until` bytes, `most` at most, or the server hangs one up."""

    def __init__(self, endpoint: str, side: int, until: int, pid: int, most: int = 16) -> None:
        self.endpoint, self.until, self.pid, self.most = endpoint, until, pid, most
        self.frames = [bytes(f) for f in encode(Echo(from_array(np.full((side, side, 4), 7, np.uint8), "u8",
                                                                         "RGBA")))]
        self.peers: list[RawPeer] = []
        self.stop = threading.Event()
        self.beat = threading.Thread(target=self._heartbeats, daemon=True)

    def _heartbeats(self) -> None:
        while not self.stop.wait(1.0):
            for peer in list(self.peers):
                try:
                    peer.sock.send(_frame(b"\x04PING\x00\x00", COMMAND), socket.MSG_DONTWAIT)  # TTL 0
                except OSError:
                    pass

    def __enter__(self) -> "EchoHolders":
        self.beat.start()
        process = psutil.Process(self.pid)
        while process.memory_info().rss < self.until and len(self.peers) < self.most:
            peer = RawPeer(self.endpoint)
            peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            try:
                for i, frame in enumerate(self.frames):
                    peer.send_part(frame, more=i < len(self.frames) - 1)
            except OSError:  # over the budget: the server hung this upload up
                peer.close()
                break
            self.peers.append(peer)
            time.sleep(0.5)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for peer in self.peers:
            peer.close()
