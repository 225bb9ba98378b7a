"""Runs the real Krita under Xvfb with the plugin installed by the project's installer.

A Krita target is the host's own Krita or one of the Debian roots of tests/krita/roots.py (Krita 5.3,
Krita 6.0). tests/krita/conftest.py picks the target of each test (`--krita=host,5.3,6.0`) and makes it the
current one, so make_home and run_krita run in it without being told.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

from . import roots

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).parent / "driver"
INSTALLER = ROOT / "installer" / "install.py"
SCREENS = {"small": (1366, 768), "large": (1600, 1000)}  # a laptop and a desktop screen
DEFAULT_SCREEN = SCREENS["large"]
TAG_VAR = "LD_E2E_RUN"  # every process a run starts carries it, so leftovers can be found and ended
RAN: dict = {}  # target name -> what its Krita said about itself in the last run (version, Qt binding, Python)


class KritaTarget:
    """Where Krita runs: the host (root None) or a Debian root, entered through its mount namespace."""

    def __init__(self, name: str, root: Optional[Path] = None, stamp: Optional[dict] = None,
                 vendor_deps: bool = False) -> None:
        self.name = name
        self.root = root
        self.stamp = stamp or {}
        self.vendor_deps = vendor_deps  # install pyzmq/msgpack wheels into the plugin instead of the system's
        self.mounted: Optional[roots.Mounted] = None
        self.lock: Optional[roots.RootLock] = None  # held shared while this session uses the root

    def __repr__(self) -> str:
        return f"KritaTarget({self.name})"

    def open(self) -> "KritaTarget":
        if self.root is not None and self.mounted is None:
            self.mounted = roots.Mounted(self.root).__enter__()
        return self

    def close(self) -> None:
        if self.mounted is not None:
            self.mounted.__exit__(None, None, None)
            self.mounted = None

    def command(self, cmd: list[str], cwd: str = "/") -> list[str]:
        """cmd as run in this target (inside the root, for a root)."""
        if self.root is None:
            return cmd
        assert self.mounted is not None, f"{self} is not open"
        return self.mounted.prefix(cwd) + cmd

    def missing(self) -> str:
        if self.root is not None:
            return ""
        tools = [tool for tool in ("krita", "Xvfb") if shutil.which(tool) is None]
        return f"{', '.join(tools)} not installed (apt-get install krita xvfb xauth python3-zmq python3-msgpack)" \
            if tools else ""


HOST = KritaTarget("host")
_current = [HOST]


def use_target(target: KritaTarget) -> None:
    _current[0] = target


def current_target() -> KritaTarget:
    return _current[0]


def krita_missing() -> str:
    return HOST.missing()


def clean_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HOME=str(home), PATH="/usr/bin:/bin", XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local" / "share"), XDG_RUNTIME_DIR=str(home / "run"))
    for var in ("LAYERINGDIFF_BACKEND", "LAYERINGDIFF_BACKEND_PYTHON", "LAYERINGDIFF_SERVER_KEY",
                "LAYERINGDIFF_CLIENT_KEY"):
        env.pop(var, None)
    return env


def install_plugin(home: Path, target: KritaTarget, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """installer/install.py as a user of that Krita runs it: with Krita's own python3 inside a root (it has
    pyzmq and msgpack there), or with this Python downloading wheels for the target's Python (vendor_deps)."""
    pykrita = home / ".local" / "share" / "krita" / "pykrita"
    kritarc = home / ".config" / "kritarc"
    args = [str(INSTALLER), "--pykrita", str(pykrita), "--kritarc", str(kritarc), "--backend-python",
            sys.executable, *extra]
    if target.vendor_deps:
        args += ["--vendor-deps", "--python-version", target.stamp["python"]]
        cmd, env = [sys.executable, *args], clean_env(home) | {"PATH": os.environ["PATH"]}
    elif target.root is not None:
        cmd, env = target.command(["python3", *args]), clean_env(home)
    else:
        cmd, env = [sys.executable, *args], clean_env(home) | {"PATH": os.environ["PATH"]}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def user_machine_pip() -> dict:
    """pip as on an artist's machine: none of this workplace's pip settings (its local wheel folders, index
    mirrors and constraints, in PIP_* variables and pip.conf files), so pip uses the public package index."""
    return {k: None for k in os.environ if k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}


def make_home(home: Path, models_dir: Path | None = None, settings: dict | None = None,
              target: Optional[KritaTarget] = None) -> None:
    """A fresh HOME with the plugin installed by installer/install.py and the test driver enabled;
    with models_dir, the docker's Models setting points the backend at it; settings: the docker's own."""
    target = target or current_target()
    (home / "run").mkdir(parents=True, exist_ok=True)
    os.chmod(home / "run", 0o700)
    pykrita = home / ".local" / "share" / "krita" / "pykrita"
    kritarc = home / ".config" / "kritarc"
    proc = install_plugin(home, target)
    if proc.returncode != 0:
        raise RuntimeError(f"installer failed in {target}:\n{proc.stdout}\n{proc.stderr}")
    shutil.copytree(DRIVER / "ld_e2e_driver", pykrita / "ld_e2e_driver")
    shutil.copy2(DRIVER / "ld_e2e_driver.desktop", pykrita / "ld_e2e_driver.desktop")
    install = _installer_module()
    edits = [("python", "enable_ld_e2e_driver", "true")]
    if models_dir is not None:
        settings = {"python": sys.executable, "autostart": True, "models_dir": str(models_dir)}
    if settings is not None:
        edits.append(("layeringdiff", "settings", json.dumps(settings)))
    install.update_kritarc(kritarc, edits)


def _installer_module():
    sys.path.insert(0, str(ROOT / "installer"))
    try:
        import install
    finally:
        sys.path.pop(0)
    return install


def add_driver(home: Path, name: str, enabled: dict[str, bool]) -> None:
    """Copy one of the test's driver plugins into HOME's pykrita folder; enable or disable plugins in kritarc."""
    pykrita = home / ".local" / "share" / "krita" / "pykrita"
    pykrita.mkdir(parents=True, exist_ok=True)
    if not (pykrita / name).exists():
        shutil.copytree(DRIVER / name, pykrita / name)
        shutil.copy2(DRIVER / f"{name}.desktop", pykrita / f"{name}.desktop")
    _installer_module().update_kritarc(home / ".config" / "kritarc",
                                       [("python", f"enable_{plugin}", "true" if on else "false")
                                        for plugin, on in enabled.items()])


def import_release_zip(home: Path, zip_path: Path, out: Path, target: Optional[KritaTarget] = None) -> dict:
    """A fresh HOME where Krita's own plugin importer imports the release zip and enables it, as an artist does
    it from Tools > Scripts > Import Python Plugin from File... (Krita is started once for that, then quits)."""
    (home / "run").mkdir(parents=True, exist_ok=True)
    os.chmod(home / "run", 0o700)
    add_driver(home, "ld_e2e_importer", {"ld_e2e_importer": True, "ld_e2e_driver": False})
    out.mkdir(parents=True, exist_ok=True)
    report = run_krita(home, out, "import", target=target, env={"LD_E2E_ZIP": str(zip_path)})
    # the second start runs the test driver beside the imported plugin
    add_driver(home, "ld_e2e_driver", {"ld_e2e_importer": False, "ld_e2e_driver": True})
    return report


def write_xauthority(path: Path) -> None:
    """A cookie file for one X server and its clients: one MIT-MAGIC-COOKIE-1 entry for any address and
    display number (Xauthority format: length-prefixed family, address, number, name, data)."""
    def field(data: bytes) -> bytes:
        return len(data).to_bytes(2, "big") + data

    entry = (0xFFFF).to_bytes(2, "big") + field(b"") + field(b"") + field(b"MIT-MAGIC-COOKIE-1") + field(os.urandom(16))
    path.write_bytes(entry)
    os.chmod(path, 0o600)


class Xvfb:
    """A virtual screen that only its own clients can use: several test runs share this machine, and a
    client of another run that reaches this display (display numbers are reused at once) would make the
    server reset under Krita's feet."""

    def __init__(self, target: Optional[KritaTarget] = None, screen: tuple[int, int] = DEFAULT_SCREEN,
                 env: Optional[dict] = None, log: Optional[Path] = None, auth: Optional[Path] = None) -> None:
        target = target or HOST
        read, write = os.pipe()
        cmd = ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{screen[0]}x{screen[1]}x24", "-nolisten", "tcp",
               "-noreset"]
        if auth is not None:
            cmd += ["-auth", str(auth)]
        with open(log or os.devnull, "w") as err:
            # not in a session of its own: Krita then fails to connect to it (seen with Krita 5.1.5)
            self.proc = subprocess.Popen(target.command(cmd), pass_fds=(write,), stderr=err, env=env)
        os.close(write)
        with os.fdopen(read) as fh:
            number = fh.readline().strip()
        if not number:
            self.proc.wait(10)
            raise RuntimeError(f"Xvfb did not start in {target} (exit {self.proc.returncode})")
        self.display = ":" + number

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def end_tagged(tag: str) -> None:
    """End what a run left behind (a backend or a daemon that left Krita's process group): the processes
    whose environment carries this run's tag, and only those."""
    needle = f"{TAG_VAR}={tag}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def run_krita(home: Path, out: Path, scenario: str, timeout: float = 240, screen: tuple[int, int] = DEFAULT_SCREEN,
              target: Optional[KritaTarget] = None, env: Optional[dict] = None) -> dict:
    """Start Krita with the driver running `scenario` on a screen of that size (env: more variables for Krita
    and the backend it starts, None to remove one); return its report (and the log on failure)."""
    target = target or current_target()
    tag = uuid.uuid4().hex
    env = clean_env(home) | (env or {}) | {TAG_VAR: tag, "XAUTHORITY": str(out / "Xauthority")}
    env = {k: v for k, v in env.items() if v is not None}  # env's None values remove a variable
    write_xauthority(out / "Xauthority")
    xvfb = Xvfb(target, screen, env, out / "xvfb.log", auth=out / "Xauthority")
    env |= {"DISPLAY": xvfb.display, "LD_E2E_OUT": str(out), "LD_E2E_SCENARIO": scenario}
    log = open(out / "krita.log", "w")
    proc = subprocess.Popen(target.command(["krita", "--nosplash"], cwd=str(home)), env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=str(home))
    report_path = out / "report.json"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
        xvfb.stop()
        end_tagged(tag)
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    report["exit_code"] = proc.returncode
    report["target"] = target.name
    report["screen_requested"] = list(screen)
    if report.get("krita"):
        RAN[target.name] = report["krita"]
    report["log_tail"] = (out / "krita.log").read_text(errors="replace")[-4000:]
    faults = out / "faulthandler.txt"  # the driver's: Python's and the C stack of a crash
    fatal = faults.read_text(errors="replace") if faults.exists() else ""
    report["fatal"] = fatal[:8000] if "Fatal Python error" in fatal else ""
    return report
