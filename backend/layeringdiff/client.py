"""Blocking ZeroMQ DEALER client for scripts, tests and benchmarks (the Krita plugin has its own).

While it waits it pings the backend every HEARTBEAT_S; a backend that answers nothing, not even a ping,
for LOST_S is reported as gone (BackendLost) instead of waiting out the caller's timeout.
"""

import time
from typing import Any, Iterator

import zmq
from layering_protocol import Cancelled, Envelope, Error, Ping, Pong, Result, decode, encode, new_id
from layering_protocol.curve import client_key_pair, server_public_key

from .wire import to_array

TERMINAL = (Result, Error, Cancelled)
HEARTBEAT_S = 1.0
LOST_S = 8.0  # as the plugin's connection


class BackendLost(ConnectionError):
    """The backend answered nothing, not even a ping, for LOST_S seconds."""


class Client:
    def __init__(self, endpoint: str, ctx: zmq.Context | None = None, server_key: str = "",
                 client_key: str = "", heartbeat: bool = True) -> None:
        """server_key (Z85 text or server.key) + client_key (this machine's .key_secret): a backend served
        with --keys. heartbeat=False: no pings of its own (a test that counts every message)."""
        self.endpoint = endpoint
        self.ctx = ctx or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # a DEALER with no connection (a refused key exchange drops it) blocks on send: give up as LOST_S does
        self.sock.setsockopt(zmq.SNDTIMEO, int(LOST_S * 1000))
        if server_key:
            self.sock.curve_publickey, self.sock.curve_secretkey = client_key_pair(client_key)
            self.sock.curve_serverkey = server_public_key(server_key)
        self.sock.connect(endpoint)
        self.heartbeat = heartbeat
        self._pings: set[str] = set()  # ids of our own heartbeat pings: their pongs are not the caller's
        self._last_heard = 0.0
        self._last_ping = 0.0

    def close(self) -> None:
        self.sock.close(linger=0)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, message: Any, msg_id: str | None = None) -> str:
        msg_id = msg_id or new_id()
        self._send(encode(message, msg_id), copy=False)
        return msg_id

    def send_raw(self, frames: list[bytes]) -> None:
        self._send(frames)

    def _send(self, frames: list[Any], copy: bool = True) -> None:
        try:
            self.sock.send_multipart(frames, copy=copy)
        except zmq.Again:
            raise BackendLost(f"could not send to the backend at {self.endpoint} for {LOST_S:.0f} s: no connection "
                              "(is it running? does it need keys, or refuse these?)") from None

    def recv(self, timeout: float = 30.0) -> Envelope:
        """The next message; TimeoutError after `timeout`, BackendLost when the backend is silent for LOST_S."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            now = time.monotonic()
            heard = max(self._last_heard, start)
            if self.heartbeat and now - heard > LOST_S:
                self._pings.clear()
                raise BackendLost(f"no answer from the backend at {self.endpoint} for {LOST_S:.0f} s: it is gone "
                                  "or unreachable")
            if now >= deadline:
                raise TimeoutError(f"no reply within {timeout}s")
            if self.heartbeat and now - self._last_ping >= HEARTBEAT_S:
                self._last_ping = now
                if len(self._pings) > 1000:  # pongs that never came: forget them
                    self._pings.clear()
                ping_id = new_id()
                try:  # never block on a heartbeat: a backend that takes nothing is what LOST_S reports
                    self.sock.send_multipart(encode(Ping(now), ping_id), zmq.NOBLOCK)
                    self._pings.add(ping_id)
                except zmq.Again:
                    pass
            wake = min(deadline, self._last_ping + HEARTBEAT_S, heard + LOST_S) if self.heartbeat else deadline
            if not self.sock.poll(max(1, int((wake - now) * 1000))):
                continue
            frames = self.sock.recv_multipart(copy=False)
            self._last_heard = time.monotonic()
            env = decode([f.buffer for f in frames], max_pixels=1 << 40)
            if env.reply_to in self._pings and isinstance(env.message, Pong):
                self._pings.discard(env.reply_to)
                continue
            return env

    def request(self, message: Any, timeout: float = 30.0) -> Envelope:
        """Send and wait for the reply to this message (other messages are skipped)."""
        msg_id = self.send(message)
        deadline = time.monotonic() + timeout
        while True:
            env = self.recv(max(0.0, deadline - time.monotonic()))
            if env.reply_to == msg_id:
                return env

    def events(self, job_id: str, timeout: float = 120.0) -> Iterator[Envelope]:
        """Messages about one job until its result, error or cancelled (included)."""
        deadline = time.monotonic() + timeout
        while True:
            env = self.recv(max(0.0, deadline - time.monotonic()))
            if env.reply_to != job_id:
                continue
            yield env
            if isinstance(env.message, TERMINAL):
                return

    def run(self, job: Any, timeout: float = 120.0) -> tuple[Envelope, list[Envelope]]:
        """Submit a job, collect its events; returns (final envelope, all events)."""
        job_id = self.send(job)
        events = list(self.events(job_id, timeout))
        return events[-1], events


def result_arrays(result: Result) -> dict[str, Any]:
    return {"foreground": to_array(result.foreground), "background": to_array(result.background),
            "alpha": to_array(result.alpha)[..., 0]}
