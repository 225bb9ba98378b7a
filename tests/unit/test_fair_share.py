"""What the server closes or cuts off when clients ask too much of it: the connections over the cap come from
the source holding the most, and a client whose replies stand still is found (peers.py). The real server under
these floods: tests/integration/test_limits.py."""

from collections import deque

from layeringdiff.peers import Connection, Connections, Outgoing, Peer


def connections(*rows):
    """(fd, host, sent a message, since) -> Connections."""
    conns = Connections()
    for fd, host, sent, since in rows:
        conns.by_fd[fd] = Connection(fd, (host, 40000 + fd), since=since, delivered=100 if sent else 0)
    return conns


def test_over_the_cap_the_source_holding_the_most_gives_one_up():
    flood = [(fd, "10.0.0.9", True, float(fd)) for fd in range(10, 20)]  # ten that each sent a ping
    conns = connections(*flood, (5, "10.0.0.2", True, 1.0), (30, "10.0.0.3", False, 30.0))  # a client, a newcomer
    assert conns.over(11) is conns.by_fd[19]  # the flood's newest, not the newcomer that has said nothing yet
    assert conns.over(11) is conns.by_fd[19]  # (until libzmq closes it: the caller marks it closing)
    conns.by_fd[19].closing = True
    assert conns.over(11) is None
    conns.by_fd[15].delivered = 0  # a flood connection still silent goes first, the oldest of them
    conns.by_fd[14].delivered = 0
    conns.by_fd[31] = Connection(31, ("10.0.0.4", 1), since=31.0)
    assert conns.over(11) is conns.by_fd[14]


def test_a_key_is_a_source_and_one_host_alone_keeps_the_old_rule():
    conns = connections(*[(fd, "10.0.0.9", True, float(fd)) for fd in range(10, 14)], (20, "10.0.0.9", False, 20.0))
    for fd in (10, 11, 12):
        conns.by_fd[fd].key = "mallory"  # three connections of one key, from the host all share (a NAT)
    conns.by_fd[13].key = "alice"
    assert conns.over(4) is conns.by_fd[12]  # mallory's newest; not alice's, not the silent newcomer
    loopback = connections(*[(fd, "127.0.0.1", True, float(fd)) for fd in range(10, 14)],
                           (20, "127.0.0.1", False, 20.0))
    assert loopback.over(4) is loopback.by_fd[20]  # one source: the oldest silent one, as before


def test_replies_that_stand_still_are_timed_and_moving_ones_are_not():
    peer = Peer(b"id")  # no TCP connection: only finished replies count as moving
    assert peer.stalled(100.0) == 0.0
    peer.queue = deque([Outgoing([b"x" * 10], 10)])
    peer.queued_bytes = 10
    assert peer.stalled(101.0) == 0.0  # waiting from now on
    assert peer.stalled(107.5) == 6.5
    peer.sent += 1  # one finished (libzmq let go of it)
    assert peer.stalled(108.0) == 0.0 and peer.stalled(110.0) == 2.0
    peer.drop()
    assert peer.stalled(200.0) == 0.0
