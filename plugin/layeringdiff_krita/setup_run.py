"""The docker's own backend: where it lives (<Krita's data folder>/layeringdiff), what the plugin zip brought to
set it up (bundle/), and the setup as a child process that the docker polls (never blocking Krita).

The child runs bundle/backend_setup.py (installer/backend_setup.py in the checkout) with a Python that
python_finder found; its output lines are either events (EVENT_PREFIX + JSON: step, download, error, done) or the
installers' own words, kept for the docker's log view. Pure Python apart from the child process.
"""

import collections
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from .backend_process import child_env
from .python_finder import NOT_FOUND, Found, find_python

EVENT_PREFIX = "@layeringdiff "  # installer/backend_setup.py writes it
STATE_FILE = "backend.json"
LOG_LINES = 4000
SPEED_WINDOW_S = 3.0  # MB/s over the last few seconds of progress lines
PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Bundle:
    """What the release zip put beside the plugin to set up its backend."""
    folder: str = os.path.join(PLUGIN_DIR, "bundle")

    def manifest(self) -> Dict[str, str]:
        try:
            with open(os.path.join(self.folder, "manifest.json"), encoding="utf-8") as fh:
                data = json.load(fh)
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    @property
    def script(self) -> str:
        return os.path.join(self.folder, "backend_setup.py")

    @property
    def wheel(self) -> str:
        name = self.manifest().get("wheel", "")
        return os.path.join(self.folder, name) if name else ""

    def usable(self) -> bool:
        """A zip install: the setup script and the backend wheel are here (a developer install has no wheel)."""
        return os.path.isfile(self.script) and bool(self.wheel) and os.path.isfile(self.wheel)


@dataclass
class Home:
    """<Krita's data folder>/layeringdiff: env/ (the private environment), backend.json once it is ready,
    models/ (the weights); kept when a newer zip is imported (Krita's importer replaces only the plugin folder)."""
    folder: str

    @property
    def models(self) -> str:
        return os.path.join(self.folder, "models")

    @property
    def env(self) -> str:
        return os.path.join(self.folder, "env")

    @property
    def state_file(self) -> str:
        return os.path.join(self.folder, STATE_FILE)

    def state(self) -> Dict[str, Any]:
        """backend.json: {"python", "release", ...} of a finished setup, {} while there is none."""
        try:
            with open(self.state_file, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or not os.path.isfile(str(data.get("python", ""))):
            return {}
        return data

    def python(self) -> str:
        return str(self.state().get("python", ""))


def fmt_bytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def fmt_elapsed(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


@dataclass
class Download:
    package: str = ""
    done: int = 0
    total: int = 0
    samples: Deque = field(default_factory=lambda: collections.deque(maxlen=64))  # (time, bytes)
    first: Tuple[float, int] = (0.0, 0)  # the first sample: a finished file's speed is over all of it

    def add(self, when: float, done: int) -> None:
        if not self.samples:
            self.first = (when, done)
        self.samples.append((when, done))

    def speed(self) -> float:
        """Bytes per second over the last SPEED_WINDOW_S while it runs, over the whole file once done (0 until two
        samples)."""
        if len(self.samples) < 2:
            return 0.0
        t1, b1 = self.samples[-1]
        if self.total and b1 >= self.total:
            t0, b0 = self.first
        else:
            t0, b0 = next((t, b) for t, b in self.samples if t1 - t <= SPEED_WINDOW_S)
        return (b1 - b0) / (t1 - t0) if t1 > t0 and b1 >= b0 else 0.0


class ChildRun:
    """A child process of the docker (the setup, a model download): its output read in a thread, lines starting
    with EVENT_PREFIX handed to on_event as JSON, the others kept as its log; Cancel ends it with its children."""

    def __init__(self, command: List[str], clock: Callable[[], float] = time.monotonic) -> None:
        self.command = command
        self.clock = clock
        self.proc: Optional[subprocess.Popen] = None
        self.started = clock()
        self.cancelled = False
        self.exit_code: Optional[int] = None
        self.start_error = ""
        self.log: List[str] = []
        self._dropped = 0  # lines cut from the front of a very long log
        self._lock = threading.Lock()
        self._reader: Optional[threading.Thread] = None

    def start(self) -> bool:
        env = child_env()
        popen: Dict[str, Any] = {}
        if os.name == "nt":  # its own group, no console window: Cancel ends the whole tree (taskkill /T)
            popen["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        else:
            popen["start_new_session"] = True  # Cancel ends pip and its children with the group
        self.add_log("$ " + " ".join(self.command))
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, encoding="utf-8", errors="replace", env=env,
                                         bufsize=1, **popen)
        except OSError as exc:
            self.start_error = f"cannot run {self.command[0]}: {exc}"
            self.exit_code = -1
            return False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return True

    def add_log(self, line: str) -> None:
        with self._lock:
            self.log.append(line)
            if len(self.log) > 2 * LOG_LINES:
                self._dropped += len(self.log) - LOG_LINES
                del self.log[:-LOG_LINES]

    def lines_since(self, count: int) -> Tuple[List[str], int]:
        """The log lines after the first `count` ever added, and the new count."""
        with self._lock:
            start = max(0, count - self._dropped)
            return self.log[start:], self._dropped + len(self.log)

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.feed(raw.rstrip("\n"))
        self.exit_code = self.proc.wait()

    def feed(self, line: str) -> None:
        """One line of the child's output."""
        if not line.startswith(EVENT_PREFIX):
            self.add_log(line)
            self.on_line(line)
            return
        try:
            event = json.loads(line[len(EVENT_PREFIX):])
        except ValueError:
            self.add_log(line)
            return
        if isinstance(event, dict):
            self.on_event(event)

    def on_event(self, event: Dict[str, Any]) -> None:
        pass

    def on_line(self, line: str) -> None:
        pass

    @property
    def finished(self) -> bool:
        return self.exit_code is not None and (self._reader is None or not self._reader.is_alive())

    def cancel(self) -> None:
        """End the child and every process it started; the next run cleans up what this one left half-done."""
        self.cancelled = True
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        if os.name == "nt":
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(proc.pid)], capture_output=True,
                           creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        else:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        self.add_log("== cancelled")


class SetupRun(ChildRun):
    """One run of the setup script: its steps, downloads, error and result, as the docker shows them."""

    def __init__(self, command: List[str], clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(command, clock)
        self.step = ""
        self.n, self.of = 0, 0
        self.download = Download()
        self.last_download: Optional[Download] = None  # shown, with its speed, until the next file is under way
        self.error: Dict[str, Any] = {}
        self.result: Dict[str, Any] = {}
        self.waiting = ""  # pip waiting on a package index that does not answer, until the next step or download

    def start(self) -> bool:
        if not super().start():
            self.error = {"why": self.start_error, "text": "starting the setup", "n": 0, "of": 0}
            return False
        return True

    def on_event(self, event: Dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "step":
            self.step, self.n, self.of = str(event.get("text", "")), int(event.get("n", 0)), int(event.get("of", 0))
            self.download, self.last_download = Download(), None
            self.waiting = ""
            self.add_log(f"== step {self.n} of {self.of}: {self.step}")
        elif kind == "retry":  # pip's own retries (15 s each by default): a captive portal, a proxy that hangs
            left = int(event.get("left", 0))  # pip's count before this retry: so many more after it
            self.waiting = (f"the package index does not answer ({event.get('why', 'no reply')}); pip tries again"
                            + (f", {left} more time{'s' if left != 1 else ''} after this" if left else
                               ", for the last time"))
        elif kind == "download":
            self.waiting = ""
            if event.get("package") != self.download.package:
                if self.download.speed() > 0:
                    self.last_download = self.download
                self.download = Download(str(event.get("package", "")))
            self.download.done, self.download.total = int(event.get("done", 0)), int(event.get("total", 0))
            self.download.add(self.clock(), self.download.done)
        elif kind == "error":
            self.error = event
            self.add_log(f"== failed: {event.get('why', '')}")
        elif kind == "done":
            self.result = event

    def on_line(self, line: str) -> None:
        """pip said something else than its retry warning (it got an answer, took a file from its cache, went
        on): the wait is over."""
        if self.waiting and "Retrying (" not in line:
            self.waiting = ""

    def changed_environment(self) -> bool:
        """Whether pip began installing into the environment in this run (its own update apart): a run cancelled
        after that may have left it half changed, whatever backend.json says (the cancel can beat the setup to
        the line that says so)."""
        for line in self.log:
            head, _, rest = line.strip().partition(":")
            if head in ("Installing collected packages", "Attempting uninstall") and rest.strip() != "pip":
                return True
        return False

    @property
    def succeeded(self) -> bool:
        return self.finished and self.exit_code == 0 and bool(self.result) and not self.cancelled

    def text(self) -> str:
        """'step 3 of 6: installing the backend and its packages: numpy 4.2 of 16.9 MB, 8.1 MB/s, 35 s'."""
        parts = [f"step {self.n} of {self.of}: {self.step}" if self.n else "starting the setup"]
        d = self.download
        if not (d.total and d.done < d.total) and d.speed() <= 0 and self.last_download is not None:
            d = self.last_download  # a finished file too small to time: the last one that was, with its speed
        if d.total:  # a finished file stays in view (speed over all of it) until the next one is under way
            speed = d.speed()
            parts.append(f"{d.package or 'downloading'} {fmt_bytes(d.done)} of {fmt_bytes(d.total)}"
                         + (f", {speed / 1e6:.1f} MB/s" if speed > 0 else ""))
        if self.waiting:
            parts.append(self.waiting)
        parts.append(fmt_elapsed(self.clock() - self.started))
        return ": ".join(parts[:2]) + "".join(", " + part for part in parts[2:])

    def fraction(self) -> float:
        """Progress for a bar: whole steps, and the download's share inside its step."""
        if not self.of:
            return 0.0
        inside = self.download.done / self.download.total if self.download.total else 0.0
        return min(1.0, (self.n - 1 + min(inside, 0.99)) / self.of)

    def failure(self) -> str:
        """One sentence: the failing step and package, and why."""
        if self.cancelled:
            return "The setup was cancelled; press Set up backend to start it again (it resumes where it stopped)."
        e = self.error
        if e:
            where = f"step {e.get('n')} of {e.get('of')} ({e.get('text')})" if e.get("n") else str(e.get("text"))
            package = f" on package {e['package']}" if e.get("package") else ""
            return f"The setup failed at {where}{package}: {str(e.get('why', '')).rstrip('.')}."
        tail = [ln for ln in self.log if ln.strip()][-1:] or ["(no output)"]
        return f"The setup stopped (exit code {self.exit_code}) at {self.step or 'its start'}: {tail[0]}."


def setup_command(found: Found, bundle: Bundle, home: Home, index_url: str = "") -> List[str]:
    cmd = [*found.command, bundle.script, "--home", home.folder, "--wheel", bundle.wheel]
    return cmd + (["--index-url", index_url] if index_url else [])


class Finder:
    """find_python in a thread: probing Pythons takes a second or two, which Krita's UI must not wait for."""

    def __init__(self, uv_dirs: List[str], find: Optional[Callable[..., Optional[Found]]] = None) -> None:
        self.found: Optional[Found] = None
        self.done = False
        self.error = ""
        self.tried: List[str] = []  # each Python looked at, and what it is: in the log, found or not

        def work() -> None:
            try:
                self.found = (find or find_python)(uv_dirs=uv_dirs, tried=self.tried)
                if self.found is None:
                    self.error = NOT_FOUND
            except Exception as exc:  # a broken PATH entry must not end the docker's setup silently
                self.error = f"looking for a Python failed: {exc}"
            self.done = True

        threading.Thread(target=work, daemon=True).start()


def setup_script_module(bundle: Bundle) -> Any:
    """The bundle's setup script as a module (standard library only), for what the docker does in-process with the
    files the setup made: removing them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("layeringdiff_backend_setup", bundle.script)
    if spec is None or spec.loader is None:
        raise OSError(f"cannot load {bundle.script}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
