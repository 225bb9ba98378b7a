"""Runs the real Krita under Xvfb with the plugin installed by the project's installer."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).parent / "driver"


def krita_missing() -> str:
    missing = [tool for tool in ("krita", "Xvfb") if shutil.which(tool) is None]
    return f"{', '.join(missing)} not installed (apt-get install krita xvfb xauth python3-zmq python3-msgpack)" \
        if missing else ""


def clean_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HOME=str(home), PATH="/usr/bin:/bin", XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local" / "share"), XDG_RUNTIME_DIR=str(home / "run"))
    for var in ("LAYERINGDIFF_BACKEND", "LAYERINGDIFF_BACKEND_PYTHON", "LAYERINGDIFF_SERVER_KEY",
                "LAYERINGDIFF_CLIENT_KEY"):
        env.pop(var, None)
    return env


def make_home(home: Path, models_dir: Path | None = None, settings: dict | None = None) -> None:
    """A fresh HOME with the plugin installed by installer/install.py and the test driver enabled;
    with models_dir, the docker's Models setting points the backend at it; settings: the docker's own."""
    (home / "run").mkdir(parents=True, exist_ok=True)
    os.chmod(home / "run", 0o700)
    pykrita = home / ".local" / "share" / "krita" / "pykrita"
    kritarc = home / ".config" / "kritarc"
    proc = subprocess.run([sys.executable, str(ROOT / "installer" / "install.py"), "--pykrita", str(pykrita),
                           "--kritarc", str(kritarc), "--backend-python", sys.executable],
                          capture_output=True, text=True, env=clean_env(home) | {"PATH": os.environ["PATH"]})
    if proc.returncode != 0:
        raise RuntimeError(f"installer failed:\n{proc.stdout}\n{proc.stderr}")
    shutil.copytree(DRIVER / "ld_e2e_driver", pykrita / "ld_e2e_driver")
    shutil.copy2(DRIVER / "ld_e2e_driver.desktop", pykrita / "ld_e2e_driver.desktop")
    sys.path.insert(0, str(ROOT / "installer"))
    try:
        import install
    finally:
        sys.path.pop(0)
    edits = [("python", "enable_ld_e2e_driver", "true")]
    if models_dir is not None:
        settings = {"python": sys.executable, "autostart": True, "model_dirs": {"all": str(models_dir)}}
    if settings is not None:
        edits.append(("layeringdiff", "settings", json.dumps(settings)))
    install.update_kritarc(kritarc, edits)


class Xvfb:
    def __init__(self, screen: str = "1600x1000") -> None:
        read, write = os.pipe()
        # -noreset: Krita connects, disconnects and reconnects while starting; a server that resets when its
        # last client leaves refuses the reconnection now and then ("could not connect to display")
        self.proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", f"{screen}x24",
                                      "-nolisten", "tcp", "-noreset"], pass_fds=(write,), stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as fh:
            self.display = ":" + fh.readline().strip()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run_krita(home: Path, out: Path, scenario: str, timeout: float = 240, screen: str = "1600x1000",
              env: dict | None = None) -> dict:
    """Start Krita with the driver running `scenario` on a virtual screen of `screen` pixels (env: more
    variables for Krita and the backend it starts); return its report (and the log on failure)."""
    xvfb = Xvfb(screen)
    env = clean_env(home) | (env or {}) | {"DISPLAY": xvfb.display, "LD_E2E_OUT": str(out),
                                          "LD_E2E_SCENARIO": scenario}
    log = open(out / "krita.log", "w")
    proc = subprocess.Popen(["krita", "--nosplash"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=str(home))
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
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    report["exit_code"] = proc.returncode
    report["log_tail"] = (out / "krita.log").read_text(errors="replace")[-4000:]
    return report
