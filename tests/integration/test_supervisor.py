"""`layeringdiff serve --restart`: the server as a child process started again, on the same port, when it dies
unasked (libzmq aborts the process on some hostile traffic: serve/supervisor.py). Real processes on loopback: the
abort is a real SIGABRT of the child; the client is the project's own."""

import signal
import socket
import time

import psutil
import pytest
from layering_protocol import Ping, Pong
from layeringdiff.client import Client
from layeringdiff.serve.supervisor import child_command, describe_exit, restart_wanted

from tests.conftest import BackendProcess
from tests.timing import LOADED_MARGIN_S, STOP_S


def server_child(supervisor: BackendProcess, timeout: float = 30.0) -> psutil.Process:
    """The `serve` child that serves (the supervisor's only child that is a Python `serve`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = [p for p in psutil.Process(supervisor.proc.pid).children() if "serve" in " ".join(p.cmdline())]
        if children:
            return children[0]
        time.sleep(0.05)
    raise AssertionError(f"no server child; log: {supervisor.log}")


def pong(endpoint: str, timeout: float = 30.0) -> bool:
    with Client(endpoint) as c:
        return isinstance(c.request(Ping(1.0), timeout=timeout).message, Pong)


def test_an_aborted_server_is_started_again_on_its_port_and_answers():
    supervisor = BackendProcess("--restart", "always")
    try:
        first = server_child(supervisor)
        assert "--restart" in first.cmdline() and str(supervisor.proc.pid) in first.cmdline()
        assert pong(supervisor.endpoint)
        first.send_signal(signal.SIGABRT)  # what libzmq's assertion does
        first.wait(10)
        deadline = time.monotonic() + 30
        while "starting it again" not in supervisor.log and time.monotonic() < deadline:
            time.sleep(0.05)
        second = server_child(supervisor)
        assert second.pid != first.pid
        assert pong(supervisor.endpoint)  # the same endpoint, the READY line's
        line = next(s for s in supervisor.log.splitlines() if "starting it again" in s)
        assert "died (killed by SIGABRT" in line and f"port {supervisor.endpoint.rsplit(':', 1)[1]}" in line
        assert "restart 1" in line and "a job it was running is lost" in line
        start = time.monotonic()
        code = supervisor.terminate()
        assert time.monotonic() - start <= STOP_S + LOADED_MARGIN_S and code == 0
        assert not second.is_running() or second.status() == psutil.STATUS_ZOMBIE
        rest = supervisor.proc.stdout.read()
        assert "READY" not in rest  # the restarted child's READY is not said again: the first still holds
    finally:
        supervisor.kill()


def test_a_server_that_never_served_is_not_started_again():
    """A port in use fails the same way every time: the child's error and exit code, once."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="backend exited early") as exc:
            BackendProcess("--restart", "always", "--port", str(port))
    assert "cannot listen" in str(exc.value) and "starting it again" not in str(exc.value)


def test_a_killed_supervisor_leaves_no_server_behind():
    supervisor = BackendProcess("--restart", "always")
    try:
        child = server_child(supervisor)
        supervisor.proc.send_signal(signal.SIGKILL)  # no chance to stop it: the child watches its parent's pid
        supervisor.proc.wait()
        child.wait(15)
    finally:
        supervisor.kill()


def test_the_child_is_the_same_serve_on_the_chosen_port_that_never_restarts_itself():
    cmd = child_command(["--host", "0.0.0.0", "--keys", "k", "--restart=always", "--port", "0", "--parent-pid",
                         "7", "--workers", "2"], 5555)
    assert cmd[1:4] == ["-m", "layeringdiff", "serve"]
    assert cmd[4:] == ["--host", "0.0.0.0", "--keys", "k", "--workers", "2", "--restart", "never",
                       "--parent-pid", str(psutil.Process().pid), "--port", "5555"]
    assert restart_wanted("auto", "0.0.0.0") and restart_wanted("auto", "192.168.1.5")
    assert not restart_wanted("auto", "127.0.0.1") and not restart_wanted("auto", "localhost")
    assert restart_wanted("always", "127.0.0.1") and not restart_wanted("never", "0.0.0.0")
    assert describe_exit(-signal.SIGABRT).startswith("killed by SIGABRT (an abort") and describe_exit(3) == \
        "exit code 3"


def test_an_abbreviated_port_is_the_port_the_restarts_keep():
    """argparse takes --po for --port: the child gets the parsed port after it, which wins (it got 0: a new port
    after each restart)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    supervisor = BackendProcess("--restart", "always", "--po", str(port))
    try:
        assert supervisor.endpoint.endswith(f":{port}")
        child = server_child(supervisor)
        assert child.cmdline()[-2:] == ["--port", str(port)]
    finally:
        supervisor.terminate()


def test_a_loopback_server_runs_in_its_own_process_by_default():
    """The docker's own backend (loopback) is watched by the docker itself: no supervisor between them."""
    server = BackendProcess()
    try:
        assert not [p for p in psutil.Process(server.proc.pid).children() if "serve" in " ".join(p.cmdline())]
    finally:
        server.terminate()
