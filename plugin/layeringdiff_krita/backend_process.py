"""The backend as a child process of Krita: start it, read its READY line, keep its log tail, stop it."""

import collections
import os
import signal
import subprocess
import threading
from typing import Deque, Dict, List, Optional

from .messages import PREPARING_PREFIX

READY_PREFIX = "READY "
LOG_LINES = 40
DRAIN_SECONDS = 1.0  # waited per reader, once the backend has exited, for its last lines
STOP_SECONDS = 3.0  # the backend stops within 2 s of SIGTERM (docs/backend.md); then it is killed


def parse_ready(line: str) -> Optional[str]:
    """'READY tcp://127.0.0.1:5555 protocol=1 ...' -> 'tcp://127.0.0.1:5555'."""
    if not line.startswith(READY_PREFIX):
        return None
    parts = line.split()
    return parts[1] if len(parts) > 1 and parts[1].startswith("tcp://") else None


def child_env() -> Dict[str, str]:
    """The environment of the docker's child processes (the backend, the setup, a download, a Python's probe):
    without Krita's own Python settings, which would break another Python, and with unbuffered UTF-8 output."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    return env


class BackendProcess:
    def __init__(self, command: List[str]) -> None:
        self.command = command
        self.proc: Optional[subprocess.Popen] = None
        self.endpoint: Optional[str] = None
        self.start_error = ""
        self.phase = ""  # what the backend said it is doing before READY (e.g. compiling its kernels)
        self._log: Deque[str] = collections.deque(maxlen=LOG_LINES)
        self._lock = threading.Lock()
        self._readers: List[threading.Thread] = []

    def start(self) -> bool:
        env = child_env()
        try:
            # UTF-8 both ways, never the locale's: Krita's embedded Python in a C/POSIX locale (or Windows)
            # reads ASCII, and one progress-bar character would end the reader thread and fill the pipe
            self.proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                encoding="utf-8", errors="replace", env=env, bufsize=1,
            )
        except OSError as exc:
            self.start_error = f"cannot run {' '.join(self.command)}: {exc}"
            return False
        self._readers = [threading.Thread(target=self._read, args=(stream, is_stdout), daemon=True)
                         for stream, is_stdout in ((self.proc.stdout, True), (self.proc.stderr, False))]
        for reader in self._readers:
            reader.start()
        return True

    def _read(self, stream, is_stdout: bool) -> None:
        for line in stream:
            line = line.rstrip("\n")
            with self._lock:
                self._log.append(line)
            if is_stdout and self.endpoint is None:
                self.endpoint = parse_ready(line)
                if line.startswith(PREPARING_PREFIX):
                    self.phase = line[len(PREPARING_PREFIX):]

    def exit_code(self) -> Optional[int]:
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, lines: int = 12) -> str:
        """Its last lines; once it has exited, with what it printed last (its error), which the readers may not
        have taken from the pipes yet (a child of it holding them open costs at most DRAIN_SECONDS a reader)."""
        if self.proc is not None and self.proc.poll() is not None:
            for reader in self._readers:
                reader.join(DRAIN_SECONDS)
        with self._lock:
            return "\n".join(list(self._log)[-lines:])

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if hasattr(signal, "SIGCONT"):  # a stopped one (SIGSTOP, a debugger) cannot act on SIGTERM: Krita froze 5 s
            try:
                self.proc.send_signal(signal.SIGCONT)
            except OSError:
                pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
