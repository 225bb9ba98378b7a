"""Non-blocking client of the backend for the docker: a DEALER socket polled from a Qt timer.

Knows the handshake (hello -> capabilities), heartbeats (ping every HEARTBEAT_S; nothing heard for
LOST_S means the backend is gone) and nothing about Krita or Qt, so it is tested with pyzmq alone.
"""

import time
from typing import Any, Callable, List, Optional

import zmq
from layering_protocol import (
    PROTOCOL_VERSION,
    Capabilities,
    Envelope,
    Error,
    ErrorCode,
    Hello,
    Ping,
    Pong,
    ProtocolError,
    decode,
    encode,
    new_id,
)

HEARTBEAT_S = 1.0
LOST_S = 8.0
CLIENT_NAME = "layeringdiff-krita"


class State:
    CONNECTING = "connecting"
    CONNECTED = "connected"
    INCOMPATIBLE = "incompatible"
    LOST = "lost"
    CLOSED = "closed"


class BackendClient:
    def __init__(self, endpoint: str, clock: Callable[[], float] = time.monotonic,
                 ctx: Optional[zmq.Context] = None) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self.ctx = ctx or zmq.Context.instance()
        self.sock: Optional[zmq.Socket] = None
        self.state = State.CLOSED
        self.detail = ""
        self.capabilities: Optional[Capabilities] = None
        self._hello_id = ""
        self._last_heard = 0.0
        self._last_ping = 0.0

    def connect(self) -> None:
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(self.endpoint)
        self.state = State.CONNECTING
        self.detail = f"connecting to {self.endpoint}"
        now = self.clock()
        self._last_heard = self._last_ping = now
        self._hello_id = self.send(Hello(CLIENT_NAME, PROTOCOL_VERSION))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None
        self.state = State.CLOSED

    @property
    def connected(self) -> bool:
        return self.state == State.CONNECTED

    def send(self, message: Any) -> str:
        if self.sock is None:
            raise RuntimeError("not connected")
        msg_id = new_id()
        self.sock.send_multipart(encode(message, msg_id), copy=False)
        return msg_id

    def poll(self, max_messages: int = 100) -> List[Envelope]:
        """Messages that arrived since the last call (handshake and pongs are consumed here)."""
        out: List[Envelope] = []
        if self.sock is None:
            return out
        for _ in range(max_messages):
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            self._last_heard = self.clock()
            try:
                env = decode([f.buffer for f in frames], max_pixels=1 << 40)
            except ProtocolError as exc:
                if exc.code == ErrorCode.VERSION_MISMATCH:
                    self._incompatible(exc.text)
                continue
            if self._handshake(env):
                continue
            if isinstance(env.message, Pong):
                continue
            out.append(env)
        return out

    def _handshake(self, env: Envelope) -> bool:
        if env.reply_to != self._hello_id:
            return False
        msg = env.message
        if isinstance(msg, Capabilities):
            if msg.protocol != PROTOCOL_VERSION:
                self._incompatible(f"backend speaks protocol {msg.protocol}, this plugin {PROTOCOL_VERSION}")
            else:
                self.capabilities = msg
                self.state = State.CONNECTED
                ready = [name for name, state in msg.models.items() if state == "ready"]
                models = f"; models ready: {', '.join(ready)}" if ready else "; no model weights (offline split only)"
                self.detail = f"{msg.server} at {self.endpoint}{models if msg.models else ''}"
        elif isinstance(msg, Error):
            self._incompatible(msg.text if msg.code == ErrorCode.VERSION_MISMATCH else f"{msg.code}: {msg.text}")
        return True

    def _incompatible(self, text: str) -> None:
        self.state = State.INCOMPATIBLE
        self.detail = f"{text}. Install the plugin and the backend from the same release."

    def tick(self) -> None:
        """Heartbeat; call often (every few tens of ms). Moves to LOST when the backend falls silent."""
        if self.sock is None or self.state in (State.INCOMPATIBLE, State.LOST, State.CLOSED):
            return
        now = self.clock()
        if now - self._last_heard > LOST_S:
            self.state = State.LOST
            self.detail = f"no answer from {self.endpoint} for {LOST_S:.0f} s"
            return
        if self.state == State.CONNECTED and now - self._last_ping >= HEARTBEAT_S:
            self._last_ping = now
            self.send(Ping(now))
