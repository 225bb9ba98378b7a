"""`layeringdiff serve --restart`: the server runs as a child process, started again when it dies unasked.

Why: libzmq 4.3.5 (the one pyzmq bundles) aborts the whole process on `Assertion failed: !_io_error
(stream_engine_base.cpp)` when a connection whose input it stopped (the server's RCVHWM reached) hangs up with a
ZMTP heartbeat still unread (libzmq issue #4841; not fixed in a release). A client flooding pings and hanging up
can do it within seconds, and no Python code runs on the way. So a server reachable from the network restarts:
the same port, the same keys and settings; clients reconnect by themselves (ZeroMQ), and a job that was running
is reported lost to its client (the plugin watches its connection drop), never answered twice.

The child is told this process's pid (`--parent-pid`): it stops by itself when the supervisor is killed.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

FIRST_DELAY_S = 0.2  # before the first restart; doubled for each crash in a row (a crash loop), up to MAX_DELAY_S
MAX_DELAY_S = 1.0  # a crash takes a client seconds of flooding: the server is back within a second each time
STABLE_S = 60.0  # a child that served this long starts the delays over
STOP_WAIT_S = 10.0  # after SIGTERM is passed on, before the child is killed
READY = re.compile(r"READY tcp://(?P<host>.+):(?P<port>\d+)\b")


def child_command(argv: Sequence[str], port: int | None) -> list[str]:
    """`layeringdiff serve` as given, never restarting itself, watching us, on `port` (the one given, then the one
    the first child chose): the options given last win, also over an abbreviation given before (--po 5557)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--restart", "--parent-pid", "--port"):
            skip = True
            continue
        if arg.startswith(("--restart=", "--parent-pid=", "--port=")):
            continue
        kept.append(arg)
    return [sys.executable, "-m", "layeringdiff", "serve", *kept, "--restart", "never",
            "--parent-pid", str(os.getpid()), "--port", str(port or 0)]


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}" + (" (an abort: libzmq's assertion on a client's traffic is the known cause)"
                                      if -code == signal.SIGABRT else "")
    return f"exit code {code}"


class Supervisor:
    def __init__(self, argv: Sequence[str], port: int = 0, watch_parent: Callable[[], bool] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        """argv: serve's own arguments as given; port: --port as parsed (0: a free one, the first child's)."""
        self.argv = list(argv)
        self.port = port
        self.watch_parent = watch_parent  # False once the process that started us is gone
        self.log = log or (lambda text: print(f"layeringdiff supervisor: {text}", file=sys.stderr, flush=True))
        self.stopping = threading.Event()
        self.child: subprocess.Popen | None = None
        self.ready_said = False
        self.restarts = 0

    def _pass_stdout(self, child: subprocess.Popen, ready: threading.Event) -> None:
        """The child's lines to our stdout: its first READY once (whoever started us reads it), the others as
        they come; its port is kept for the restarts."""
        assert child.stdout is not None
        for line in child.stdout:
            match = READY.match(line)
            if match:
                self.port = int(match["port"])
                ready.set()
                if self.ready_said:
                    continue
                self.ready_said = True
            try:
                sys.stdout.write(line)
                sys.stdout.flush()
            except (OSError, ValueError):
                pass

    def _stop(self, *_: object) -> None:
        self.stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            try:
                child.send_signal(signal.SIGTERM)
            except OSError:
                pass

    def run(self) -> int:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._stop)
        delay = FIRST_DELAY_S
        while True:
            started = time.monotonic()
            ready = threading.Event()
            self.child = subprocess.Popen(child_command(self.argv, self.port), stdout=subprocess.PIPE, text=True,
                                          bufsize=1)
            reader = threading.Thread(target=self._pass_stdout, args=(self.child, ready), daemon=True)
            reader.start()
            if self.stopping.is_set():  # a signal while it started
                self._stop()
            code = self._wait(self.child)
            reader.join(timeout=1.0)
            if self.stopping.is_set() or code == 0:  # asked to stop, or stopped by itself (its parent gone)
                return max(code, 0)
            if not ready.is_set():  # never served: a setting it refused (a port in use, keys) fails again
                return code if code > 0 else 1
            served = time.monotonic() - started
            delay = FIRST_DELAY_S if served >= STABLE_S else delay
            self.restarts += 1
            self.log(f"the server died ({describe_exit(code)}) after {served:.1f} s; starting it again on port "
                     f"{self.port} in {delay:.1f} s (restart {self.restarts}); clients reconnect by themselves, "
                     "a job it was running is lost")
            if self.stopping.wait(delay):
                return 0
            delay = min(MAX_DELAY_S, delay * 2)

    def _wait(self, child: subprocess.Popen) -> int:
        """The child's exit code; SIGKILL when it outlives a stop by STOP_WAIT_S; stop it when our parent is gone."""
        stop_sent = None
        while True:
            try:
                return child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            if self.watch_parent is not None and not self.watch_parent() and not self.stopping.is_set():
                self.log("the process that started the server is gone; stopping it")
                self._stop()
            if self.stopping.is_set():
                stop_sent = stop_sent or time.monotonic()
                if time.monotonic() - stop_sent > STOP_WAIT_S:
                    child.kill()


def restart_wanted(choice: str, host: str) -> bool:
    """--restart auto: on for a server others can reach (not loopback), whose traffic we do not control."""
    from ..keys import is_loopback

    return choice == "always" if choice != "auto" else not is_loopback(host)
