"""The mounts a Krita root needs live only in a private mount namespace and go away with it, even when the
test run that made them is killed."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import roots

pytestmark = [pytest.mark.krita]


def host_mounts_under(path: Path) -> list[str]:
    return roots._mounts_under(path)


def running(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()  # a zombie has ended
    except OSError:
        return False


def test_mounts_are_inside_the_namespace_only(krita_target):
    if krita_target.root is None:
        pytest.skip("the host's Krita needs no mounts")
    inside = subprocess.run(krita_target.command(["cat", "/proc/self/mountinfo"]), capture_output=True, text=True,
                            timeout=60)
    points = {line.split()[4] for line in inside.stdout.splitlines()}
    # the checkout, its venv and base Python at their own paths (one bind for a folder inside another bound one:
    # a checkout under /tmp comes with /tmp)
    assert {"/proc", "/dev", "/tmp", *(str(p) for p in roots.default_binds())} <= points, points
    repo = Path(__file__).resolve().parents[2]
    seen = subprocess.run(krita_target.command(["test", "-f", str(repo / "pyproject.toml")]), timeout=60)
    assert seen.returncode == 0, f"{repo} is not visible inside the root"
    assert host_mounts_under(krita_target.root) == []
    # the backend's Python runs inside the root, with the venv's packages
    proc = subprocess.run(krita_target.command([sys.executable, "-c", "import layeringdiff, numpy, zmq; print('ok')"]),
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_a_killed_run_leaves_no_mounts_and_no_holder(krita_target, tmp_path):
    if krita_target.root is None:
        pytest.skip("the host's Krita needs no mounts")
    script = ("import sys, time; sys.path.insert(0, sys.argv[1]); from tests.krita import roots; "
              "m = roots.Mounted(roots.Path(sys.argv[2])).__enter__(); print(m.proc.pid, flush=True); time.sleep(600)")
    run = subprocess.Popen([sys.executable, "-c", script, str(Path(__file__).resolve().parents[2]),
                            str(krita_target.root)], stdout=subprocess.PIPE, text=True)
    holder = int(run.stdout.readline())
    namespace = os.readlink(f"/proc/{holder}/ns/mnt")
    assert namespace != os.readlink("/proc/self/ns/mnt")
    run.send_signal(signal.SIGKILL)  # no cleanup code runs
    run.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and running(holder):
        time.sleep(0.2)
    assert not running(holder), "the namespace holder outlived its run"
    assert host_mounts_under(krita_target.root) == []
