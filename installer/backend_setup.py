#!/usr/bin/env python3
"""Set up the LayeringDiff backend in a private Python environment. Standard library only, Python 3.10+.

The Krita docker runs this in a child process with a Python it found (never Krita's own) and reads its output:
lines starting with EVENT_PREFIX carry one JSON event (step, download, error, done); every other line is the
installers' own output, shown in the docker's log. By hand, from an unpacked release zip:

    python3 backend_setup.py --home ~/.local/share/krita/layeringdiff --wheel layeringdiff-X-py3-none-any.whl

Steps: check (Python, venv, disk space), environment (HOME/env, reused when it works: a retry resumes), pip (a
pip that reports download progress), packages (the wheel and its dependencies from the package index), verify
(every module imports, the version is the wheel's), prepare (`layeringdiff prepare` compiles the image kernels),
then HOME/backend.json names the environment's Python. Nothing outside HOME is written except pip's own download
cache, which lets a retry skip what it already fetched. backend.json is taken away when the run starts changing the
environment (pip installing, or a broken environment made again): a run that fails or is cancelled before that (the
package index out of reach, a package missing) leaves an earlier backend as it was, working; one that fails after it
leaves backend.json out, so the docker offers the setup again, and the next run repairs what it finds. One run at a
time in a HOME (HOME/setup.lock). Runs on old Pythons far enough to say that they are too old.
"""

from __future__ import annotations  # a Python older than 3.10 gets to the check that names it

import argparse
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVENT_PREFIX = "@layeringdiff "
NEED_BYTES = 1_200_000_000  # environment (0.71 GB on Linux), pip's download cache (about 0.25 GB), margin
MIN_PYTHON = (3, 10)
STATE_FILE = "backend.json"
# what must import once the packages are in: a dependency that pip left out is named here, not at the first split
MODULES = ("layeringdiff", "layering_protocol", "numpy", "cv2", "PIL", "pymatting", "numba", "skimage", "zmq",
           "msgpack", "psutil")
STEPS = {"check": "checking Python and disk space", "environment": "making the private Python environment",
         "pip": "updating pip", "packages": "installing the backend and its packages",
         "verify": "checking the installed modules", "prepare": "compiling the image kernels"}
_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)")
_DOWNLOADING = re.compile(r"^\s*Downloading (\S+?)(?: \(([\d.]+) ([kMG]?B)\))?\s*$")
_COLLECTING = re.compile(r"^\s*Collecting (\S+)")
_NOT_FOUND = re.compile(r"(?:No matching distribution found for|satisfies the requirement) (\S+)")
_BUILDING = re.compile(r"Building wheel for (\S+)")
_UNREACHABLE = re.compile(r"Failed to establish a new connection: \[Errno -?\d+\] ([^'\")]+)|"
                          r"(Name or service not known|Temporary failure in name resolution|SSLError|"
                          r"CERTIFICATE_VERIFY_FAILED|Read timed out)")
_HOST = re.compile(r"HTTPS?ConnectionPool\(host='([^']+)', port=(\d+)\)")
# pip waits and tries again (5 times by default, 15 s each): said in the docker's status line, not only in the log
_RETRYING = re.compile(r"Retrying \(Retry\(total=(\d+).*?after connection broken by '(\w+)")
_CHANGING = ("Installing collected packages", "Attempting uninstall")  # pip starts changing the environment here
# a lock held by another process; anything else (ENOLCK: a network home without a lock daemon) goes on without one
_LOCKED = {errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)}
_NO_SPACE = re.compile(r"No space left on device|\[Errno 28\]|There is not enough space on the disk")
_PIP_CONFIG = re.compile(r"Configuration file (?:could not be loaded|contains invalid)")
_CONFIG_FILE = re.compile(r"file: '([^']+)'|characters in (.+?)\.?$")
LOCK_FILE = "setup.lock"


class SetupFailed(Exception):
    def __init__(self, step: str, text: str, package: str = "") -> None:
        super().__init__(text)
        self.step, self.text, self.package = step, text, package


def emit(event: str, **fields) -> None:
    print(EVENT_PREFIX + json.dumps({"event": event, **fields}), flush=True)


def log(text: str) -> None:
    print(text, flush=True)


def env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def package_name(requirement: str) -> str:
    """'numpy>=1.24' -> 'numpy'; 'numpy-2.1.0-cp312-...whl' -> 'numpy'."""
    name = os.path.basename(requirement)
    if name.endswith((".whl", ".tar.gz", ".zip")):
        return name.split("-")[0]
    return re.split(r"[<>=!~;\[ (]", name, maxsplit=1)[0]


def probe_index(url: str) -> str:
    """'' when the index answers over HTTP (even with an error page), else why it cannot be reached."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url, timeout=15).close()
    except urllib.error.HTTPError:
        return ""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return (getattr(reason, "strerror", None) or str(reason)).lower()
    return ""


def remove_tree(path: Path) -> None:
    """rmtree that also removes read-only files (Windows) and never stops half-way on one file."""
    def retry(func, target, _exc):
        try:
            os.chmod(target, 0o700)
            func(target)
        except OSError:
            pass
    if path.exists():
        shutil.rmtree(path, onerror=retry)
    if path.exists():
        raise OSError(f"cannot remove {path}: a program may still use it (close it and retry)")


def lock(path: Path):  # -> an open file, the lock held while it is open (and dropped when the process ends)
    """One setup at a time in a folder: a second Krita window's Set up, or one started again while the first goes on,
    would run pip into the same environment at once."""
    handle = open(path, "a+")  # noqa: SIM115 - held for the whole run
    try:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in _LOCKED:
            log(f"(no lock on {path}: {exc}; going on without it)")
            return handle
        handle.close()
        raise SetupFailed("check", f"another setup is running in {path.parent} (one left running when Krita was "
                                   "closed, in another Krita, or started by hand): wait for it to finish, then press "
                                   "Set up backend again") from None
    return handle


def pip_config_trouble(lines: list) -> str:
    """pip's own words when its configuration file cannot be read, with the file named; '' when that is not it."""
    at = next((i for i, ln in enumerate(lines) if _PIP_CONFIG.search(ln)), None)
    if at is None:
        return ""
    text = " ".join(ln.strip() for ln in lines[at:at + 4] if ln.strip())
    found = _CONFIG_FILE.search(text)
    where = (found.group(1) or found.group(2)) if found else "(pip config list names it)"
    return (f"pip's configuration file {where} cannot be read: correct it or move it away ({text[:160]})")


class Setup:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.home = Path(args.home).expanduser().resolve()
        self.env = self.home / "env"
        self.python = env_python(self.env)
        self.order = [s for s in STEPS if not (s == "prepare" and args.no_prepare)]
        self.step = "check"
        self.state = self.home / STATE_FILE
        self.lock = None

    def changing(self) -> None:
        """The environment is about to change: an earlier backend is no longer known to work until this run ends."""
        if self.state.exists():
            self.state.unlink()
            log(f"(the environment is being changed: {self.state.name} is written again when the setup finishes)")

    def begin(self, step: str) -> None:
        self.step = step
        emit("step", step=step, n=self.order.index(step) + 1, of=len(self.order), text=STEPS[step])

    def run(self, cmd: list, pip: bool = False) -> str:
        """Run a command, passing its output line by line to the log (pip's progress lines become download
        events); return its output; SetupFailed names the step and, for pip, the package it was on."""
        log("$ " + " ".join(str(c) for c in cmd))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV")}
        env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PIP_NO_INPUT="1")
        proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, encoding="utf-8", errors="replace")
        lines, current, failing, unreachable, host = [], "", "", "", ""
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            match = _PROGRESS.match(line) if pip else None
            if match:  # pip --progress-bar raw: bytes of the file being downloaded
                emit("download", package=current, done=int(match.group(1)), total=int(match.group(2)))
                continue
            lines.append(line)
            log(line)
            # pip begins changing the environment (its own update alone leaves the backend as it was)
            if pip and line.lstrip().startswith(_CHANGING) and line.split(":", 1)[-1].strip() != "pip":
                self.changing()
            retry = _RETRYING.search(line) if pip else None
            if retry:
                emit("retry", left=int(retry.group(1)), why=retry.group(2))
            address = _HOST.search(line) if pip else None
            if address:
                host = f"{address.group(1)}:{address.group(2)}"
            for pattern in (_DOWNLOADING, _COLLECTING, _BUILDING):
                hit = pattern.search(line) if pip else None
                if hit:
                    current = package_name(hit.group(1))
                    break
            missing = _NOT_FOUND.search(line) if pip else None
            if missing:
                failing = package_name(missing.group(1))
            network = _UNREACHABLE.search(line) if pip else None
            if network:
                unreachable = (network.group(1) or network.group(2)).strip().lower()
        code = proc.wait()
        if code == 0 and unreachable:  # pip went on without the index (nothing it needed from it): said, not fatal
            log(f"(pip could not reach the package index: {unreachable}; it went on with what it had)")
        if code != 0:
            errors = [ln.strip() for ln in lines if ln.strip().upper().startswith("ERROR")]
            said = [ln.strip() for ln in lines if ln.strip()]
            why = errors[-1] if errors else (" ".join(said[-3:]) if said else f"exit code {code}")
            if not unreachable and failing and self.args.index_url:  # pip says "from versions: none" either way
                unreachable = probe_index(self.args.index_url)
            config = pip_config_trouble(lines) if pip else ""
            if config:
                why, failing, current = config, "", ""
            elif any(_NO_SPACE.search(ln) for ln in lines):  # not the package's fault: whichever pip was on
                why = (f"the disk is full (no space left on device): free about {NEED_BYTES / 1e9:.1f} GB on the "
                       f"disk of {self.home} (and of the temporary folder, {tempfile.gettempdir()}), then retry")
                failing = current = ""
            elif unreachable:
                index = self.args.index_url or (f"{host}, pip's own" if host else "pip's own")
                why = (f"the package index ({index}) could not be reached: {unreachable}. Check the internet "
                       "connection or the proxy (pip reads HTTPS_PROXY), or set another package index under Advanced")
                if "certificate" in unreachable:
                    why += (" (a network that inspects encrypted traffic needs its certificate authority trusted: "
                            "the system's certificate store, or PIP_CERT)")
            raise SetupFailed(self.step, why[:400], failing or current)
        return "\n".join(lines)

    # ---- the steps ---------------------------------------------------------------------------------
    def check(self) -> None:
        if sys.version_info[:2] < MIN_PYTHON:
            raise SetupFailed("check", f"Python {sys.version.split()[0]} is too old: the backend needs 3.10 or later")
        try:
            import ensurepip  # noqa: F401  (Debian splits venv's pip out: python3-venv)
            import venv  # noqa: F401
        except ImportError:
            raise SetupFailed("check", f"{sys.executable} cannot make environments (no venv/ensurepip module): "
                                       "install python3-venv (Debian, Ubuntu) or Python from python.org") from None
        wheel = Path(self.args.wheel)
        if not wheel.is_file():
            raise SetupFailed("check", f"the backend wheel {wheel} is missing: import the plugin zip again")
        self.home.mkdir(parents=True, exist_ok=True)
        self.lock = lock(self.home / LOCK_FILE)
        free = shutil.disk_usage(self.home).free
        have = self.env_size() if self.env.exists() else 0
        need = max(NEED_BYTES - have, 0)
        log(f"Python {sys.version.split()[0]} at {sys.executable}; {free / 1e9:.1f} GB free in {self.home}, about "
            f"{need / 1e9:.1f} GB needed")
        if free < need:
            raise SetupFailed("check", f"not enough disk space in {self.home}: about {need / 1e9:.1f} GB needed, "
                                       f"{free / 1e9:.1f} GB free")

    def env_size(self) -> int:
        total = 0
        for root, _dirs, files in os.walk(self.env):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_size
                except OSError:
                    pass
        return total

    def environment(self) -> None:
        if self.python.exists():
            try:
                # its pip too: venv installs it last, so a run stopped in between left a python without one, which
                # every retry then reused and failed on ("No module named pip")
                subprocess.run([str(self.python), "-c", "import pip"], check=True, capture_output=True,
                               timeout=60)  # imported, not run: pip's own settings (a broken pip.conf) not read
                log(f"reusing the environment in {self.env}")
                return
            except (OSError, subprocess.SubprocessError):
                log(f"the environment in {self.env} does not run, or has no pip: making it again")
        self.changing()
        remove_tree(self.env)  # a half-made one (a cancelled or failed run) never blocks the retry
        self.run([sys.executable, "-m", "venv", str(self.env)])

    def pip_args(self) -> list:
        args = ["--disable-pip-version-check", "--no-input"]
        if self.args.index_url:
            args += ["--index-url", self.args.index_url]
        return args

    def pip_reports_progress(self) -> bool:
        """pip 24.1 and later print `Progress N of M` lines with --progress-bar raw."""
        out = subprocess.run([str(self.python), "-m", "pip", "--version"], capture_output=True, text=True)
        log(out.stdout.strip())
        version = re.match(r"pip (\d+)\.(\d+)", out.stdout or "")
        return bool(version) and (int(version.group(1)), int(version.group(2))) >= (24, 1)

    def pip(self) -> None:
        if not self.pip_reports_progress():  # an older pip still installs, without download progress
            self.run([self.python, "-m", "pip", "install", "--upgrade", "pip", *self.pip_args(), "--progress-bar",
                      "off"], pip=True)

    def packages(self) -> None:
        wheel = str(Path(self.args.wheel).resolve())
        progress = ["--progress-bar", "raw" if self.pip_reports_progress() else "off"]
        self.run([self.python, "-m", "pip", "install", *self.pip_args(), *progress, wheel], pip=True)
        # the same version number with other code (a re-import of a rebuilt zip): the bundled wheel wins
        self.run([self.python, "-m", "pip", "install", *self.pip_args(), "--no-deps", "--force-reinstall", wheel],
                 pip=True)

    def verify(self) -> None:
        script = ("import importlib, sys\nmissing = []\nfor m in sys.argv[1:]:\n    try:\n"
                  "        importlib.import_module(m)\n    except Exception as exc:\n"
                  "        missing.append(f'{m} ({type(exc).__name__}: {exc})')\n"
                  "print('MISSING ' + '; '.join(missing) if missing else 'OK')\n"
                  "import layeringdiff; print('VERSION ' + layeringdiff.__version__)\n")
        out = subprocess.run([str(self.python), "-c", script, *MODULES], capture_output=True, text=True)
        log(out.stdout.strip() + ("\n" + out.stderr.strip() if out.stderr.strip() else ""))
        missing = re.search(r"^MISSING (.*)$", out.stdout, re.M)
        if missing:
            name = missing.group(1).split(" ", 1)[0]
            raise SetupFailed("verify", f"the module {missing.group(1)} does not import after the install", name)
        version = re.search(r"^VERSION (\S+)", out.stdout, re.M)
        expected = Path(self.args.wheel).name.split("-")[1]
        if not version or version.group(1) != expected:
            raise SetupFailed("verify", f"the environment has layeringdiff {version.group(1) if version else '?'}, "
                                        f"not the plugin's {expected}", "layeringdiff")

    def prepare(self) -> None:
        self.run([self.python, "-m", "layeringdiff", "prepare"])

    def main(self) -> int:
        state = self.state
        started = time.monotonic()
        try:
            for step in self.order:
                self.begin(step)
                getattr(self, step)()
        except SetupFailed as exc:
            emit("error", step=exc.step, n=self.order.index(exc.step) + 1, of=len(self.order),
                 text=STEPS[exc.step], why=exc.text, package=exc.package)
            return 1
        except OSError as exc:  # a full disk, a file in use
            emit("error", step=self.step, n=self.order.index(self.step) + 1, of=len(self.order),
                 text=STEPS[self.step], why=str(exc), package="")
            return 1
        release = Path(self.args.wheel).name.split("-")[1]
        info = {"python": str(self.python), "release": release, "set_up": time.strftime("%Y-%m-%d %H:%M:%S"),
                "seconds": round(time.monotonic() - started, 1)}
        tmp = state.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=1), encoding="utf-8")
        os.replace(tmp, state)
        emit("done", **info)
        return 0


def main(argv: list | None = None) -> int:  # noqa: UP007 - read lazily (the future import)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", required=True, help="the folder for the environment (Krita's data/layeringdiff)")
    parser.add_argument("--wheel", required=True, help="the backend wheel to install (from the plugin zip)")
    parser.add_argument("--index-url", default="", help="package index to install from (default: pip's own)")
    parser.add_argument("--no-prepare", action="store_true", help="do not compile the kernels now")
    return Setup(parser.parse_args(argv)).main()


if __name__ == "__main__":
    sys.exit(main())
