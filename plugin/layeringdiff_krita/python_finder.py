"""Find a Python that can make the backend's private environment: 3.10 or later, with venv (never Krita's own).

Linux and macOS: `python3.X` and `python3` on PATH and in the usual install folders (an app started from the
macOS Finder or a desktop menu gets a short PATH). Windows: the `py` launcher, then python.exe on PATH (not the
Microsoft Store's stand-in in WindowsApps, which opens the Store). Where none is found: uv, on PATH or in the
setup's own folder, which runs the setup script with a Python it manages (and downloads where there is none).

Pure apart from the injected `which`, `run` and `is_file`, so every platform's lookup is tested on any machine.
"""

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

from .backend_process import child_env

MIN_VERSION = (3, 10)
# the best-supported first: every dependency of the backend ships wheels for these; then newer, then older
PREFERRED = ((3, 12), (3, 13), (3, 11), (3, 14), (3, 10))
UV_PYTHON = "3.12"  # what uv is asked for when it has to provide the Python
# the version first, so that a Python without venv (or too old to be asked further) is still named in the log
PROBE = ("import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable); import venv, ensurepip; "
         "print('venv')")
MAC_DIRS = ("/opt/homebrew/bin", "/usr/local/bin", "/Library/Frameworks/Python.framework/Versions/Current/bin")
LINUX_DIRS = ("/usr/bin", "/usr/local/bin")
NOT_FOUND = ("No Python 3.10 or later with venv was found. Install Python from python.org (on Windows keep the "
             "'py launcher' option), or your system's python3 with python3-venv, or uv; then press Set up backend "
             "again. Or choose an existing Python under Advanced.")

Run = Callable[[Sequence[str]], Tuple[int, str]]


def run_command(cmd: Sequence[str]) -> Tuple[int, str]:
    env = child_env()
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # no console window flashing up on Windows
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=20, env=env, creationflags=flags,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return -1, ""
    return out.returncode, out.stdout


@dataclass
class Found:
    command: List[str]  # run the setup script with this command prefix
    version: str = ""  # "3.12"; "" for uv (it picks)
    how: str = ""  # said in the docker's log
    tried: List[str] = field(default_factory=list)


def _version(text: str) -> Optional[Tuple[int, int]]:
    match = re.match(r"(\d+)\.(\d+)", text.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def _rank(version: Tuple[int, int]) -> int:
    return PREFERRED.index(version) if version in PREFERRED else len(PREFERRED) + (100 - version[1])


def probe(python: str, run: Run, prefix: Sequence[str] = ()) -> Tuple[Optional[Tuple[Tuple[int, int], str]], str]:
    """((version, executable), verdict) of a Python that has venv and ensurepip, else (None, why not): the verdict
    is what the docker's log says of it."""
    code, out = run([python, *prefix, "-c", PROBE])
    lines = out.strip().splitlines()
    version = _version(lines[0]) if lines else None
    if version is None:
        return None, "does not run (or is no Python)"
    shown = "{}.{}".format(*version)
    if version < MIN_VERSION:
        return None, f"{shown}, older than {MIN_VERSION[0]}.{MIN_VERSION[1]}"
    if code != 0 or len(lines) < 3 or lines[2].strip() != "venv":
        return None, f"{shown} without venv/ensurepip (Debian, Ubuntu: install python3-venv)"
    return (version, lines[1].strip()), f"{shown} with venv"


def py_launcher_versions(listing: str) -> List[str]:
    """`py -0p` output (' -V:3.12 *  C:\\...\\python.exe' or ' -3.12-64  C:\\...') -> ['3.12', ...]."""
    found = []
    for line in listing.splitlines():
        match = re.match(r"\s*-(?:V:)?(\d+\.\d+)", line)
        if match and match.group(1) not in found:
            found.append(match.group(1))
    return found


def candidates(system: str, which: Callable[[str], Optional[str]], run: Run,
               is_file: Callable[[str], bool]) -> List[Tuple[str, Sequence[str]]]:
    """(program, arguments before -c) to probe, in the order to try them."""
    out: List[Tuple[str, Sequence[str]]] = []
    if system == "win32":
        launcher = which("py")
        if launcher:
            code, listing = run([launcher, "-0p"])
            versions = py_launcher_versions(listing) if code == 0 else []
            for v in sorted(versions, key=lambda v: _rank(_version(v) or (0, 0))):
                out.append((launcher, [f"-{v}"]))
            out.append((launcher, ["-3"]))
        exe = which("python")
        if exe and "windowsapps" not in exe.lower():
            out.append((exe, []))
        return out
    folders = MAC_DIRS if system == "darwin" else LINUX_DIRS
    names = [f"python{v[0]}.{v[1]}" for v in PREFERRED] + ["python3"]
    for name in names:
        path = which(name)
        if path:
            out.append((path, []))
        for folder in folders:
            path = f"{folder}/{name}"
            if is_file(path) and (path, []) not in out:
                out.append((path, []))
    return out


def find_python(system: str = sys.platform, which: Callable[[str], Optional[str]] = shutil.which,
                run: Run = run_command, is_file: Callable[[str], bool] = os.path.isfile,
                uv_dirs: Sequence[str] = (), tried: Optional[List[str]] = None) -> Optional[Found]:
    """The best Python to set up the backend with, else uv, else None (say NOT_FOUND). `tried`: a list that gets
    each candidate with what was found of it, found or not (for the docker's log)."""
    tried = [] if tried is None else tried
    best: Optional[Found] = None
    best_rank = 1 << 30
    for program, prefix in candidates(system, which, run, is_file):
        shown = " ".join([program, *prefix])
        result, verdict = probe(program, run, prefix)
        tried.append(f"{shown}: {verdict}")
        if result and _rank(result[0]) < best_rank:
            best_rank = _rank(result[0])
            version = "{}.{}".format(*result[0])
            # the launcher's pick, by its real path: the setup's own child processes need no launcher
            best = Found([result[1] or program], version, f"Python {version} ({result[1] or shown})")
    if best is not None:
        best.tried = tried
        return best
    exe = "uv.exe" if system == "win32" else "uv"
    uv = which("uv") or next((f"{d}/{exe}" for d in uv_dirs if is_file(f"{d}/{exe}")), None)
    if uv:
        tried.append(f"uv: {uv}")
        return Found([uv, "run", "--no-project", "--python", UV_PYTHON, "python"], "", f"uv ({uv}) with Python "
                     f"{UV_PYTHON}, which uv downloads if this computer has none", tried)
    return None
