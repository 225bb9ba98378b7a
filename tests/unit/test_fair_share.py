"""What the server closes or cuts off when clients ask too much of it: the connection closed over the cap, and a
client whose replies stand still (peers.py). The real server under these floods: tests/integration/test_limits.py."""

import socket
import time
from collections import deque

from layeringdiff.peers import (
    CLIENT_CONNECTIONS,
    HAS_TCP_INFO,
    IDLE_AFTER_S,
    Connection,
    Connections,
    Outgoing,
    Peer,
)

NOW = 1000.0


def connections(*rows):
    """(fd, host, sent a message, seconds ago) -> Connections."""
    conns = Connections()
    for fd, host, sent, ago in rows:
        conns.by_fd[fd] = Connection(fd, (host, 40000 + fd), since=NOW - ago, delivered=100 if sent else 0)
    return conns


def test_a_flood_of_active_connections_from_one_source_closes_its_own_not_a_newcomer():
    flood = [(fd, "10.0.0.9", True, 100.0 - fd) for fd in range(10, 40)]  # 30 that each sent a ping
    conns = connections(*flood, (5, "10.0.0.2", True, 500.0), (50, "10.0.0.3", False, 0.1))  # a client, a newcomer
    assert conns.over(31, NOW) is conns.by_fd[39]  # the flood's newest, not the newcomer that has said nothing yet
    for fd in range(10, 30):
        conns.by_fd[fd].key = "mallory"  # a key is a source: twenty of one key from a host all share (a NAT)
    assert conns.over(31, NOW) is conns.by_fd[29]


def test_idle_connections_go_first_whoever_holds_the_most():
    """A flood of silent connections from many hosts, one each, and a client key with a few working ones: the
    oldest idle connection goes, not the client's (the review's case: the source holding the most was the client)."""
    idle = [(100 + i, f"10.1.0.{i}", False, 60.0 - i) for i in range(10)]
    conns = connections(*idle, (6, "10.0.0.5", True, 300.0), (7, "10.0.0.6", True, 200.0))
    conns.by_fd[6].key = conns.by_fd[7].key = "alice"
    assert conns.over(11, NOW) is conns.by_fd[100]
    slowloris = connections(*[(100 + i, "10.1.0.1", False, 60.0 - i) for i in range(10)], (50, "10.0.0.3", False, 0.1))
    assert slowloris.over(10, NOW) is slowloris.by_fd[100]  # its oldest, not the newcomer


def test_young_silent_connections_go_before_a_clients_working_ones():
    """Silent connections too new to be called idle (a fast flood from many hosts, or from the client's own host
    on loopback): the oldest of them goes, not the working connections of a client, nor the newcomer."""
    young = [(100 + i, f"10.1.0.{i}", False, IDLE_AFTER_S / 2 - i * 0.01) for i in range(10)]
    conns = connections(*young, *[(fd, "10.0.0.5", True, 300.0 - fd) for fd in range(3)])
    assert conns.over(12, NOW) is conns.by_fd[100]
    loopback = connections(*[(100 + i, "127.0.0.1", False, 1.0 - i * 0.01) for i in range(40)],
                           (5, "127.0.0.1", True, 300.0), (60, "127.0.0.1", False, 0.001))  # a client, a newcomer
    assert loopback.over(41, NOW) is loopback.by_fd[100]
    # one source under the flood mark, all working but the newcomer: the newest working one goes
    busy = connections(*[(fd, "127.0.0.1", True, 300.0 - fd) for fd in range(CLIENT_CONNECTIONS)],
                       (50, "127.0.0.1", False, 0.1))
    assert busy.over(CLIENT_CONNECTIONS, NOW) is busy.by_fd[CLIENT_CONNECTIONS - 1]


def test_replies_that_stand_still_are_timed_by_the_bytes_the_client_acknowledges():
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server_side, _ = listener.accept()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        peer = Peer(b"id", fd=server_side.fileno())
        assert peer.stalled(100.0) == 0.0  # nothing waiting
        peer.queue = deque([Outgoing([b"x" * 10], 10)])
        peer.queued_bytes = 10
        assert peer.stalled(101.0) == 0.0  # waiting from now on
        if HAS_TCP_INFO:  # Linux: the bytes the client acknowledged
            assert peer.stalled(107.5) == 6.5
            server_side.sendall(b"y" * 1000)  # the client's kernel acknowledges them: they moved
            time.sleep(0.2)
            assert peer.stalled(108.0) == 0.0 and peer.stalled(110.0) == 2.0
            peer.sent += 1  # a reply finished
            assert peer.stalled(111.0) == 0.0
        peer.drop()
        assert peer.stalled(200.0) == 0.0
        assert Peer(b"no tcp").stalled(300.0) == 0.0  # where the kernel does not tell, never taken for stalled
    finally:
        for sock in (client, server_side, listener):
            sock.close()
