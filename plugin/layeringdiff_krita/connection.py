"""Non-blocking client of the backend for the docker: a DEALER socket polled from a Qt timer.

Knows the handshake (hello -> capabilities), heartbeats (ping every HEARTBEAT_S; nothing heard for
LOST_S means the backend is gone), CURVE keys for a remote backend (a failed key exchange is reported
from the socket's monitor at once, not as silence) and nothing about Krita or Qt, so it is tested with
pyzmq alone.
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
from layering_protocol.curve import client_key_pair, server_public_key
from zmq.utils.monitor import recv_monitor_message

HEARTBEAT_S = 1.0
LOST_S = 8.0
CLIENT_NAME = "layeringdiff-krita"


class SendFailed(RuntimeError):
    """A message could not be queued for the backend (no connection to queue it on)."""


class State:
    STARTING = "starting"  # the docker's own backend process has not said READY yet (no time limit)
    CONNECTING = "connecting"
    CONNECTED = "connected"
    INCOMPATIBLE = "incompatible"
    LOST = "lost"
    REFUSED = "refused"  # the key exchange failed: settings must change before reconnecting
    CLOSED = "closed"


# handshake failures the socket monitor reports (libzmq >= 4.3; older ones just stay silent until LOST_S)
_FAILED_AUTH = getattr(zmq, "EVENT_HANDSHAKE_FAILED_AUTH", 0)
_FAILED_PROTOCOL = getattr(zmq, "EVENT_HANDSHAKE_FAILED_PROTOCOL", 0)
_FAILED_NO_DETAIL = getattr(zmq, "EVENT_HANDSHAKE_FAILED_NO_DETAIL", 0)
HANDSHAKE_FAILURES = _FAILED_AUTH | _FAILED_PROTOCOL | _FAILED_NO_DETAIL
# a connection that dropped: ZeroMQ reconnects by itself, but the backend that answers may be a new one (a studio
# server restarts after a crash: `serve --restart`) that never heard of the job sent before
DROPPED = zmq.EVENT_DISCONNECTED


class BackendClient:
    def __init__(self, endpoint: str, clock: Callable[[], float] = time.monotonic,
                 ctx: Optional[zmq.Context] = None, server_key: str = "", client_key: str = "") -> None:
        """server_key (Z85 text or server.key) and client_key (this machine's .key_secret file) are for a
        backend served with --keys; both empty for a local one."""
        self.endpoint = endpoint
        self.server_key = server_key.strip()
        self.client_key = client_key.strip()
        self._monitor: Optional[zmq.Socket] = None
        self.drops = 0  # connections that dropped (DROPPED) since connect()
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
        if self.server_key or self.client_key:
            try:
                self._use_keys()
            except ValueError as exc:
                self._refused(f"{exc}.")
                return
        self._monitor = self.sock.get_monitor_socket(HANDSHAKE_FAILURES | DROPPED)
        self.sock.connect(self.endpoint)
        self.state = State.CONNECTING
        self.detail = f"connecting to {self.endpoint}"
        now = self.clock()
        self._last_heard = self._last_ping = now
        try:
            self._hello_id = self.send(Hello(CLIENT_NAME, PROTOCOL_VERSION))
        except SendFailed:  # not queued: no answer comes, and LOST_S of silence says so
            self._hello_id = ""

    def _use_keys(self) -> None:
        if not zmq.has("curve"):
            raise ValueError("this Krita's pyzmq was built without CURVE security, which a remote backend needs")
        if not self.server_key:
            raise ValueError("a Client key file is set but no Server key: set both, or neither for a local backend")
        if not self.client_key:
            raise ValueError("a Server key is set but no Client key file (this computer's .key_secret file)")
        server = server_public_key(self.server_key)
        self.sock.curve_publickey, self.sock.curve_secretkey = client_key_pair(self.client_key)
        self.sock.curve_serverkey = server

    def close(self) -> None:
        self._close_sockets()
        self.state = State.CLOSED

    def _close_sockets(self) -> None:
        if self._monitor is not None:
            if self.sock is not None:
                self.sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None

    def _refused(self, text: str) -> None:
        """Stop here: ZeroMQ would retry the same failing handshake forever."""
        self._close_sockets()
        self.state = State.REFUSED
        self.detail = text

    def check_events(self) -> None:
        """The socket monitor's events so far: failed handshakes (named at once), dropped connections (drops)."""
        while self._monitor is not None and self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)["event"]
            if event == DROPPED:
                self.drops += 1
                continue
            keyed = bool(self.server_key)
            where = f"the backend at {self.endpoint}"
            if event == _FAILED_AUTH:
                self._refused(f"{where} refused this computer's key. Ask whoever runs it to allow it "
                              "(`layeringdiff keys client`), or check the Client key file in Settings.")
            elif event == _FAILED_PROTOCOL and keyed:
                self._refused(f"{where} does not use keys: clear the Server key and Client key file in Settings.")
            elif keyed:  # which side hung up first decides whether libzmq can say more than this
                self._refused(f"the secure handshake with {where} failed: check the Server key in Settings (the "
                              "one `layeringdiff keys init` printed for that server), or clear both keys if that "
                              "backend does not use them.")
            else:
                self._refused(f"{where} did not accept the connection: it requires keys (set the Server key and "
                              "the Client key file in Settings), or it is not a layeringdiff backend.")

    @property
    def connected(self) -> bool:
        return self.state == State.CONNECTED

    def send(self, message: Any) -> str:
        """Queue a message, never blocking Krita: SendFailed when there is no connection to queue it on (a DEALER
        whose key exchange was refused has none) or its queue is full."""
        if self.sock is None:
            raise SendFailed(f"not connected to {self.endpoint}")
        msg_id = new_id()
        try:
            self.sock.send_multipart(encode(message, msg_id), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            raise SendFailed(f"the backend at {self.endpoint} takes no messages now (no connection)") from None
        return msg_id

    def poll(self, max_messages: int = 100) -> List[Envelope]:
        """Messages that arrived since the last call (handshake and pongs are consumed here)."""
        out: List[Envelope] = []
        self.check_events()
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
        if self.sock is None or self.state in (State.INCOMPATIBLE, State.LOST, State.REFUSED, State.CLOSED):
            return
        now = self.clock()
        if now - self._last_heard > LOST_S:
            self.state = State.LOST
            self.detail = f"no answer from {self.endpoint} for {LOST_S:.0f} s"
            return
        if self.state == State.CONNECTED and now - self._last_ping >= HEARTBEAT_S:
            self._last_ping = now
            try:
                self.send(Ping(now))
            except SendFailed:  # nothing goes out: LOST_S of silence says so
                pass
