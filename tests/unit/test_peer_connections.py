"""A connection that takes over the descriptor of one just closed, before the socket monitor says so: real TCP
sockets on loopback, the transport's bookkeeping without a ZeroMQ socket."""

import os
import socket
from contextlib import ExitStack
from typing import Any

import zmq
from layeringdiff.limits import Limits
from layeringdiff.peers import peer_address
from layeringdiff.serve.transport import Transport


class Host:
    def __init__(self) -> None:
        self.left: list[tuple[bytes, bool]] = []

    def on_message(self, *_: Any) -> None: ...

    def on_leave(self, identity: bytes, cut: bool) -> None:
        self.left.append((identity, cut))

    def held_by_jobs(self) -> int:
        return 0

    def busy(self) -> bool:
        return False


class Frame:
    """What the transport reads of a received frame: the descriptor it came in on."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def get(self, name: Any) -> Any:
        return self.fd if name == zmq.SRCFD else None


def connect(listener: socket.socket, stack: ExitStack) -> None:
    stack.enter_context(socket.create_connection(listener.getsockname()))


def accept(listener: socket.socket, fd: int | None = None) -> int:
    """Accept one connection; with `fd`, on that descriptor number (the kernel gives the lowest free one)."""
    accepted, _ = listener.accept()
    if fd is None or accepted.fileno() == fd:
        return accepted.detach()
    os.dup2(accepted.fileno(), fd)
    accepted.close()
    return fd


def test_a_client_on_a_reused_descriptor_is_not_taken_for_gone():
    host = Host()
    transport = Transport(host, Limits.make(1 << 20, 1 << 30, 0), None, None)
    with ExitStack() as stack, socket.create_server(("127.0.0.1", 0)) as listener:
        connect(listener, stack)
        fd = accept(listener)
        try:
            transport.conns.accepted(fd)  # the monitor's event for the first client
            first = transport._peer(b"first", Frame(fd))
            transport._account(first, 100)
            connect(listener, stack)
            os.close(fd)  # the first client is gone; the monitor has not said so yet
            accept(listener, fd)  # and the next one gets the same descriptor
            second = transport._peer(b"second", Frame(fd))
            transport._account(second, 50)
            transport.check_connections(set())
            assert host.left == [(b"first", False)]  # its jobs cancelled, the second client's kept
            assert set(transport.peers) == {b"second"}
            assert transport.conns.by_fd[fd].address == second.address == peer_address(fd)
            assert transport.conns.by_fd[fd].delivered == 50  # the second connection's bytes only
            transport.check_connections(set())  # and again, once the monitor's record is the second's
            assert set(transport.peers) == {b"second"} and len(host.left) == 1
        finally:
            os.close(fd)
