"""Blocking ZeroMQ DEALER client for scripts, tests and benchmarks (the Krita plugin has its own)."""

import time
from typing import Any, Iterator

import zmq
from layering_protocol import Cancelled, Envelope, Error, Result, decode, encode, new_id
from layering_protocol.curve import client_key_pair, server_public_key

from .wire import to_array

TERMINAL = (Result, Error, Cancelled)


class Client:
    def __init__(self, endpoint: str, ctx: zmq.Context | None = None, server_key: str = "",
                 client_key: str = "") -> None:
        """server_key (Z85 text or server.key) + client_key (this machine's .key_secret): a backend served
        with --keys."""
        self.ctx = ctx or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if server_key:
            self.sock.curve_publickey, self.sock.curve_secretkey = client_key_pair(client_key)
            self.sock.curve_serverkey = server_public_key(server_key)
        self.sock.connect(endpoint)

    def close(self) -> None:
        self.sock.close(linger=0)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, message: Any, msg_id: str | None = None) -> str:
        msg_id = msg_id or new_id()
        self.sock.send_multipart(encode(message, msg_id), copy=False)
        return msg_id

    def send_raw(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def recv(self, timeout: float = 30.0) -> Envelope:
        if not self.sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"no reply within {timeout}s")
        frames = self.sock.recv_multipart(copy=False)
        return decode([f.buffer for f in frames], max_pixels=1 << 40)

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
