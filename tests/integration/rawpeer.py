"""A peer that speaks ZMTP 3.0 (NULL mechanism) over a plain TCP socket, so a test can do what libzmq never
does: send part of a multipart message and stop, or send frames slowly."""

import socket
import struct

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
