"""The docker's own backend: the setup script's events as the docker reads them, Cancel, failures named by step
and package, Retry, the version check. Real child processes throughout; the whole setup against the real package
index runs in the real Krita (tests/krita/test_release_zip.py)."""

import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
from layering_protocol import RELEASE, compare_releases, server_release
from layeringdiff_krita.controller import Controller
from layeringdiff_krita.own_backend import OwnBackend, SetupState
from layeringdiff_krita.python_finder import NOT_FOUND, Found
from layeringdiff_krita.settings import Settings
from layeringdiff_krita.setup_run import EVENT_PREFIX, Bundle, Home, SetupRun, setup_script_module

from .fakes import FakeBridge, FakeClock, FakeView

ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = ROOT / "installer" / "backend_setup.py"


def event(kind, **fields):
    return EVENT_PREFIX + json.dumps({"event": kind, **fields})


def test_the_docker_shows_step_download_speed_and_elapsed_time():
    clock = FakeClock()
    run = SetupRun(["true"], clock)
    run.feed(event("step", step="packages", n=4, of=6, text="installing the backend and its packages"))
    run.feed("Collecting numpy>=1.24")
    run.feed(event("download", package="numpy", done=0, total=16_900_000))
    clock.advance(2.0)
    run.feed(event("download", package="numpy", done=8_000_000, total=16_900_000))
    text = run.text()
    assert text.startswith("step 4 of 6: installing the backend and its packages: numpy 8.0 MB of 16.9 MB, 4.0 MB/s")
    assert text.endswith("2 s")
    assert 3 / 6 < run.fraction() < 4 / 6
    clock.advance(1.0)
    run.feed(event("download", package="numpy", done=16_900_000, total=16_900_000))
    run.feed(event("download", package="tiny", done=9_000, total=9_000))  # one progress line: too small to time
    # a file that finished stays in view with its speed over the whole file, until one under way replaces it
    assert "numpy 16.9 MB of 16.9 MB, 5.6 MB/s" in run.text(), run.text()
    lines, count = run.lines_since(0)
    assert "Collecting numpy>=1.24" in lines and "== step 4 of 6: installing the backend and its packages" in lines
    assert run.lines_since(count) == ([], count)


def test_an_index_that_does_not_answer_is_said_in_the_status_line_while_pip_waits(tmp_path):
    """A captive portal or a hanging proxy: pip waits 15 s a try, 5 tries, per file. The setup passes pip's retries
    on (a real pip against a server that accepts and never answers), and the docker's status line says them."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    home = tmp_path / "home"
    subprocess.run([sys.executable, "-m", "venv", str(home / "env")], check=True, timeout=300)
    try:
        proc = setup_script(home, tiny_wheel(tmp_path, needs="tqdm"), "--index-url",
                            f"http://127.0.0.1:{port}/simple", "--no-prepare",
                            env=artists_pip(PIP_TIMEOUT="1", PIP_RETRIES="1"))
    finally:
        silent.close()
    got = events(proc.stdout)
    retries = [e for e in got if e["event"] == "retry"]
    assert retries and retries[-1]["left"] == 0 and retries[-1]["why"] == "ReadTimeoutError", got
    assert got[-1]["event"] == "error" and "could not be reached: read timed out" in got[-1]["why"]
    clock = FakeClock()
    run = SetupRun(["true"], clock)
    run.feed(event("step", step="pip", n=3, of=6, text="updating pip"))
    clock.advance(31)
    run.feed(event("retry", left=3, why="ReadTimeoutError"))
    run.feed("WARNING: Retrying (Retry(total=3, connect=None, read=None, redirect=None, status=None)) after ...")
    assert run.text() == ("step 3 of 6: updating pip: the package index does not answer (ReadTimeoutError); pip "
                          "tries again, 3 more times after this, 31 s")
    run.feed(event("retry", left=0, why="ReadTimeoutError"))
    assert "pip tries again, for the last time" in run.text()
    run.feed("Requirement already satisfied: pip in ./env/lib/python3.11/site-packages")  # it went on
    assert "does not answer" not in run.text()
    run.feed(event("retry", left=1, why="ConnectTimeoutError"))
    run.feed(event("step", step="packages", n=4, of=6, text="installing the backend and its packages"))
    assert "does not answer" not in run.text()


def test_a_failure_is_one_sentence_naming_the_step_and_the_package():
    run = SetupRun(["true"])
    run.feed(event("error", step="packages", n=4, of=6, text="installing the backend and its packages",
                   why="the package index (http://x/simple) could not be reached: connection refused", package="numpy"))
    assert run.failure() == ("The setup failed at step 4 of 6 (installing the backend and its packages) on package "
                             "numpy: the package index (http://x/simple) could not be reached: connection refused.")


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cancel_ends_the_setup_and_everything_it_started(tmp_path):
    pids = tmp_path / "pids"
    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent(f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pids)!r}, "w").write(str(child.pid))
        print("working", flush=True)
        time.sleep(60)
    """))
    run = SetupRun([sys.executable, str(script)])
    assert run.start()
    deadline = time.monotonic() + 20
    while not pids.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pids.read_text())
    run.cancel()
    while not run.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.finished and not run.succeeded
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(grandchild)  # pip's own children end with the setup
    assert "cancelled" in run.failure()


def tiny_wheel(folder, needs="numpy>=1.24"):
    """A valid wheel named like the backend's that needs `needs` from the index (and holds nothing else)."""
    wheel = folder / f"layeringdiff-{RELEASE}-py3-none-any.whl"
    info = f"layeringdiff-{RELEASE}.dist-info"
    files = {f"{info}/METADATA": f"Metadata-Version: 2.1\nName: layeringdiff\nVersion: {RELEASE}\n"
                                 + (f"Requires-Dist: {needs}\n" if needs else ""),
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr(f"{info}/RECORD", "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n")
    return wheel


def setup_script(home, wheel, *extra, env=None):
    return subprocess.run([sys.executable, str(SETUP_SCRIPT), "--home", str(home), "--wheel", str(wheel), *extra],
                          capture_output=True, text=True, timeout=300, env=env)


def events(out):
    return [json.loads(ln[len(EVENT_PREFIX):]) for ln in out.splitlines() if ln.startswith(EVENT_PREFIX)]


def test_the_setup_script_names_an_unreachable_index_and_leaves_nothing_that_blocks_a_retry(tmp_path):
    wheel = tiny_wheel(tmp_path)
    home = tmp_path / "home"
    (home / "env").mkdir(parents=True)  # what a cancelled run can leave: a folder without a working Python
    # pip as on an artist's machine (none of this workplace's local wheel folders), giving up at once
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull,
                                                                                "PIP_RETRIES": "0"}
    proc = setup_script(home, wheel, "--index-url", "http://127.0.0.1:9/simple", "--no-prepare", env=env)
    assert proc.returncode == 1
    got = events(proc.stdout)
    assert [e["step"] for e in got if e["event"] == "step"] == ["check", "environment", "pip", "packages"]
    error = got[-1]
    assert error["event"] == "error" and error["step"] == "packages" and error["n"] == 4 and error["of"] == 5
    assert "could not be reached" in error["why"] and "127.0.0.1:9" in error["why"]
    assert (home / "env" / ("Scripts" if os.name == "nt" else "bin")).is_dir()  # remade, not stuck on the old one
    assert not (home / "backend.json").exists()


def test_an_environment_left_without_pip_is_made_again_not_reused(tmp_path):
    """A cancel in step 2 lands after venv made the python and before it installed pip: every retry reused it and
    failed at step 3 ("No module named pip"), for good."""
    home = tmp_path / "home"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home / "env")], check=True, timeout=120)
    env = artists_pip(PIP_RETRIES="0")
    proc = setup_script(home, tiny_wheel(tmp_path), "--index-url", "http://127.0.0.1:9/simple", "--no-prepare",
                        env=env)
    error = events(proc.stdout)[-1]
    assert proc.returncode == 1 and error["step"] == "packages", error  # past pip: the environment was made again
    assert "has no pip: making it again" in proc.stdout + proc.stderr
    python = home / "env" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    assert subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, timeout=60).returncode == 0


def artists_pip(**extra):
    """pip as on an artist's machine: none of this workplace's settings (local wheel folders, constraints)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull,
                                                                                 **extra}


def test_an_update_keeps_the_working_backend_until_pip_starts_changing_it(tmp_path):
    """backend.json (the docker's "a backend is set up") stays while nothing has changed: an index out of reach, a
    broken pip.conf, a second setup in the same folder; it goes once pip installs, so a run that fails after that
    leaves the setup to be done again. The reasons name what to do."""
    home = tmp_path / "home"
    subprocess.run([sys.executable, "-m", "venv", str(home / "env")], check=True, timeout=300)
    python = home / "env" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    state = home / "backend.json"
    earlier = json.dumps({"python": str(python), "release": "0.1.0"})
    state.write_text(earlier)
    wheel = tiny_wheel(tmp_path, needs="tqdm")  # tqdm: not in the environment, so pip needs the index
    proc = setup_script(home, wheel, "--index-url", "http://127.0.0.1:9/simple", "--no-prepare",
                        env=artists_pip(PIP_RETRIES="0"))
    error = events(proc.stdout)[-1]
    assert proc.returncode == 1 and error["step"] in ("pip", "packages") and state.read_text() == earlier, error
    assert "(http://127.0.0.1:9/simple) could not be reached" in error["why"] and "proxy" in error["why"]
    broken = tmp_path / "pip.conf"
    broken.write_text("[global\nindex-url = http://127.0.0.1:9/simple\n")
    proc = setup_script(home, wheel, "--no-prepare", env=artists_pip(PIP_CONFIG_FILE=str(broken)))
    error = events(proc.stdout)[-1]
    assert proc.returncode == 1 and state.read_text() == earlier, error
    assert f"pip's configuration file {broken} cannot be read: correct it or move it away" in error["why"]
    assert not error["package"]
    if os.name != "nt":  # another run holds the folder's lock
        import fcntl

        with open(home / "setup.lock", "a+") as held:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            proc = setup_script(home, wheel, "--no-prepare")
        error = events(proc.stdout)[-1]
        assert proc.returncode == 1 and error["step"] == "check" and "another setup is running" in error["why"]
        assert state.read_text() == earlier
    proc = setup_script(home, tiny_wheel(tmp_path, needs=""), "--no-prepare")  # installs (offline), then verify fails
    error = events(proc.stdout)[-1]
    assert proc.returncode == 1 and error["step"] == "verify" and not state.exists(), error
    assert "Installing collected packages: layeringdiff" in proc.stdout


def test_a_full_disk_is_said_as_such_not_blamed_on_a_package(tmp_path):
    setup = setup_script_module(Bundle(str(SETUP_SCRIPT.parent)))
    args = setup.argparse.Namespace(home=str(tmp_path), wheel="w.whl", index_url="", no_prepare=True)
    run = setup.Setup(args)
    run.step = "packages"
    said = ("Collecting lazy_loader\nInstalling collected packages: numpy\n"
            "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device\n")
    with pytest.raises(setup.SetupFailed) as failed:
        run.run([sys.executable, "-c", f"import sys; sys.stdout.write({said!r}); sys.exit(1)"], pip=True)
    assert failed.value.package == "" and failed.value.text.startswith("the disk is full (no space left on device)")
    assert str(tmp_path) in failed.value.text
    with pytest.raises(setup.SetupFailed) as failed:  # no ERROR line, the last one blank: the last lines said
        run.run([sys.executable, "-c", "print('the venv module failed:'); print('ensurepip is missing'); print(); "
                                        "raise SystemExit(1)"])
    assert failed.value.text == "the venv module failed: ensurepip is missing"


def test_a_folder_that_cannot_be_locked_is_set_up_without_the_lock(tmp_path, monkeypatch, capsys):
    """ENOLCK (a network home without a lock daemon) is no other setup: said in the log, and the run goes on."""
    import errno

    if os.name == "nt":
        pytest.skip("fcntl")
    import fcntl

    setup = setup_script_module(Bundle(str(SETUP_SCRIPT.parent)))

    def no_locks(fd, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    handle = setup.lock(tmp_path / "setup.lock")
    handle.close()
    assert "no lock on" in capsys.readouterr().out

    def held(fd, how):
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(fcntl, "flock", held)
    with pytest.raises(setup.SetupFailed, match="another setup is running"):
        setup.lock(tmp_path / "setup.lock")


def test_the_setup_script_reaches_its_too_old_check_on_old_pythons(tmp_path):
    """Debian 11 and macOS's own python3 are 3.9: the by-hand command must say so, not fail on 3.10 syntax."""
    import ast

    source = SETUP_SCRIPT.read_text()
    ast.parse(source, feature_version=(3, 8))
    assert "from __future__ import annotations" in source  # annotations such as `list | None` never evaluated
    fake = ("import runpy, sys; sys.version_info = (3, 9, 2, 'final', 0); sys.version = '3.9.2 (fake)'; "
            f"sys.argv = ['backend_setup.py', '--home', {str(tmp_path)!r}, '--wheel', 'w.whl']; "
            f"runpy.run_path({str(SETUP_SCRIPT)!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", fake], capture_output=True, text=True, timeout=60)
    error = events(proc.stdout)[-1]
    assert proc.returncode == 1 and error["why"] == "Python 3.9.2 is too old: the backend needs 3.10 or later"


def test_modules_missing_after_the_install_are_named(tmp_path):
    """A package that installs but leaves a module out (the leading Krita AI plugin's most frequent complaint) is
    found by the setup, not by the first split: here the wheel holds no code at all."""
    proc = setup_script(tmp_path / "home", tiny_wheel(tmp_path), "--no-prepare")  # numpy from pip's own settings
    error = events(proc.stdout)[-1]
    assert proc.returncode == 1 and error["step"] == "verify" and error["package"] == "layeringdiff", error
    assert "does not import after the install" in error["why"]


def test_the_setup_script_checks_its_wheel_before_touching_anything(tmp_path):
    proc = setup_script(tmp_path / "home", tmp_path / "missing.whl")
    error = events(proc.stdout)[-1]
    assert proc.returncode == 1 and error["step"] == "check" and "import the plugin zip again" in error["why"]
    assert not (tmp_path / "home" / "env").exists()


FAKE_SETUP = """
import json, os, sys, time
args = sys.argv[1:]
home = args[args.index("--home") + 1]
say = lambda kind, **f: print({prefix!r} + json.dumps(dict(event=kind, **f)), flush=True)
say("step", step="check", n=1, of=2, text="checking")
print("a line of the installer's own output", flush=True)
if os.path.exists(os.path.join(home, "installing")):
    print("Installing collected packages: numpy", flush=True)
if os.path.exists(os.path.join(home, "hang")):
    time.sleep(60)
if os.path.exists(os.path.join(home, "fail-once")):
    os.remove(os.path.join(home, "fail-once"))
    say("error", step="check", n=1, of=2, text="checking", why="the disk is full", package="numpy")
    sys.exit(1)
say("step", step="packages", n=2, of=2, text="installing")
with open(os.path.join(home, "backend.json"), "w") as fh:
    json.dump(dict(python=sys.executable, release="{release}"), fh)
say("done", python=sys.executable, release="{release}")
"""


def fake_bundle(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "backend_setup.py").write_text(FAKE_SETUP.format(prefix=EVENT_PREFIX, release=RELEASE))
    (bundle / f"layeringdiff-{RELEASE}-py3-none-any.whl").write_bytes(b"")
    (bundle / "manifest.json").write_text(json.dumps({"wheel": f"layeringdiff-{RELEASE}-py3-none-any.whl"}))
    return Bundle(str(bundle))


def pump(own, until, timeout=30):
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        own.tick()
        time.sleep(0.02)
    assert until(), own.state


def test_a_failed_setup_says_why_and_retry_finishes_it(tmp_path, monkeypatch):
    found = Found([sys.executable], "3.x", "Python 3.x (this test's)")
    monkeypatch.setattr("layeringdiff_krita.setup_run.find_python", lambda **_: found)
    home = Home(str(tmp_path / "home"))
    os.makedirs(home.folder)
    Path(home.folder, "fail-once").write_text("")
    view, started = FakeView(), []
    own = OwnBackend(view, home, fake_bundle(tmp_path), lambda: started.append(True), lambda: None)
    own.need()
    assert view.setup[-1][0] == "needed" and "private Python environment" in view.setup[-1][1]
    own.start()
    pump(own, lambda: own.state == SetupState.FAILED)
    assert view.setup[-1][1] == ("The setup failed at step 1 of 2 (checking) on package numpy: the disk is full.")
    assert "a line of the installer's own output" in view.setup_log and not started
    own.start()  # Retry
    pump(own, lambda: own.state == SetupState.READY)
    assert started == [True] and Path(home.python()).is_file()
    assert view.setup_log[0].startswith("using Python 3.x")  # a new run starts a new log


def test_an_update_that_fails_or_is_cancelled_before_it_changes_anything_keeps_the_backend_running(tmp_path,
                                                                                                   monkeypatch):
    """The setup keeps backend.json until it starts changing the environment: the docker then says what failed,
    starts the backend it had again and offers the update again, instead of "not set up"."""
    found = Found([sys.executable], "3.x", "Python 3.x (this test's)")
    monkeypatch.setattr("layeringdiff_krita.setup_run.find_python", lambda **_: found)
    home = Home(str(tmp_path / "home"))
    os.makedirs(home.folder)
    Path(home.folder, "backend.json").write_text(json.dumps({"python": sys.executable, "release": "0.1.0"}))
    Path(home.folder, "fail-once").write_text("")
    view, started, stopped = FakeView(), [], []
    own = OwnBackend(view, home, fake_bundle(tmp_path), lambda: started.append(True), lambda: stopped.append(True))
    own.offer_update("0.1.0", RELEASE)
    own.start()  # Update backend
    pump(own, lambda: not own.busy)
    assert own.state == SetupState.UPDATE and stopped == [True] and started == [True]
    said = "The setup failed at step 1 of 2 (checking) on package numpy: the disk is full."
    assert view.setup[-1][1].startswith(said) and "The backend you had (0.1.0) is unchanged" in view.setup[-1][1]
    assert view.last == (view.setup[-1][1], True)
    Path(home.folder, "hang").write_text("")
    own.start()
    pump(own, lambda: own.state == SetupState.RUNNING and own.run is not None and own.run.n == 1)
    own.cancel()
    pump(own, lambda: not own.busy)
    assert own.state == SetupState.UPDATE and started == [True, True]
    assert view.last == ("The update was cancelled. The backend you had (0.1.0) is unchanged and runs again; Update "
                         "backend tries again.", False)
    # cancelled just as pip began installing, before the setup took backend.json away: not kept
    Path(home.folder, "installing").write_text("")
    own.start()
    pump(own, lambda: own.run is not None and "Installing collected packages: numpy" in own.run.log)
    own.cancel()
    pump(own, lambda: not own.busy)
    assert own.state == SetupState.FAILED and started == [True, True] and not home.python()
    os.remove(Path(home.folder, "hang"))
    os.remove(Path(home.folder, "installing"))
    Path(home.folder, "fail-once").write_text("")
    own.start()  # a run that had started changing the environment (backend.json gone): set up again
    pump(own, lambda: not own.busy)
    assert own.state == SetupState.FAILED and started == [True, True]


def test_an_update_with_no_python_to_run_it_or_cancelled_while_looking_keeps_the_backend(tmp_path, monkeypatch):
    home = Home(str(tmp_path / "home"))
    os.makedirs(home.folder)
    Path(home.folder, "backend.json").write_text(json.dumps({"python": sys.executable, "release": "0.1.0"}))
    monkeypatch.setattr("layeringdiff_krita.setup_run.find_python", lambda **_: None)
    view, started = FakeView(), []
    own = OwnBackend(view, home, fake_bundle(tmp_path), lambda: started.append(True), lambda: None)
    own.start()
    pump(own, lambda: not own.busy)
    assert own.state == SetupState.UPDATE and started == [True] and view.setup[-1][1].startswith(NOT_FOUND)
    own.start()
    own.finder = None  # still looking when Cancel comes
    own.cancel()
    assert own.state == SetupState.UPDATE and started == [True, True]
    assert view.last[0].startswith("The update was cancelled. The backend you had (0.1.0) is unchanged")


def test_no_python_found_says_what_to_install_and_the_log_says_what_each_one_was(tmp_path, monkeypatch):
    def nothing(tried, **_):
        tried.append("/usr/bin/python3: 3.9, older than 3.10")

    monkeypatch.setattr("layeringdiff_krita.setup_run.find_python", nothing)
    view = FakeView()
    own = OwnBackend(view, Home(str(tmp_path)), fake_bundle(tmp_path), lambda: None, lambda: None)
    own.start()
    pump(own, lambda: own.state == SetupState.FAILED)
    assert view.setup[-1][1] == NOT_FOUND and "  tried /usr/bin/python3: 3.9, older than 3.10" in view.setup_log


def test_no_backend_means_the_setup_panel_and_no_split(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `layeringdiff` command on it
    view = FakeView()
    ctl = Controller(FakeBridge(), view, Settings(), clock=FakeClock(), home=Home(str(tmp_path / "h")),
                     bundle=fake_bundle(tmp_path))
    ctl.start()
    assert ctl.needs_setup() and ctl.process is None and view.setup[-1][0] == "needed"
    assert view.connection == ("not set up", "press Set up backend below")
    ctl.split_selected()
    assert view.last == ("Set up the backend first: press Set up backend.", True)


def test_releases_compare_and_an_older_own_backend_gets_update_backend(tmp_path):
    assert server_release(f"layeringdiff {RELEASE}") == RELEASE and server_release("something 1.0") == ""
    assert compare_releases("0.1.0", "0.2.0") == -1 and compare_releases("0.10.0", "0.9.1") == 1
    assert compare_releases("0.2", "0.2.0") == 0 and compare_releases("0.2.0rc1", "0.2.0") == 0
    home = Home(str(tmp_path))
    Path(tmp_path, "backend.json").write_text(json.dumps({"python": sys.executable, "release": "0.1.0"}))
    view = FakeView()
    ctl = Controller(FakeBridge(), view, Settings(), clock=FakeClock(), home=home, bundle=fake_bundle(tmp_path))
    ctl.process = object()  # the docker's own backend process is the one that answered
    said = ctl._compare_versions("layeringdiff 0.1.0")
    assert f"The backend is 0.1.0, this plugin {RELEASE}: press Update backend." in said
    assert view.setup[-1][0] == "update" and "Update backend installs" in view.setup[-1][1]
    assert "newer than this plugin" in ctl._compare_versions("layeringdiff 99.0.0")
    ctl.settings.python = "/opt/other/python"  # a backend the user installed: the docker does not touch it
    assert "pip install -U layeringdiff" in ctl._compare_versions("layeringdiff 0.1.0")
    assert ctl._compare_versions(f"layeringdiff {RELEASE}") == ""


def test_remove_the_backend_keeps_the_models_unless_asked(tmp_path):
    home = Home(str(tmp_path / "h"))
    for folder in (home.env, home.models):
        os.makedirs(folder)
        Path(folder, "file").write_text("x")
    Path(home.folder, "backend.json").write_text(json.dumps({"python": sys.executable, "release": RELEASE}))
    view, stopped = FakeView(), []
    own = OwnBackend(view, home, Bundle(str(ROOT / "installer")), lambda: None, lambda: stopped.append(True))
    said = own.remove(models=False)
    own.removing.join(30)
    own.tick()
    assert stopped == [True] and "Removing" in said and not own.busy
    assert not os.path.exists(home.env) and os.path.exists(Path(home.models, "file")) and home.python() == ""
    assert view.setup[-1][0] == "needed"  # the docker offers the setup again
    own.remove(models=True)
    own.removing.join(30)
    assert not os.path.exists(home.models)


def test_removing_the_local_backend_while_on_a_studio_server_keeps_that_connection(tmp_path):
    """Before: the studio server's connection was closed, the docker asked for a 1.2 GB setup, and every split was
    refused until one was made."""
    home = Home(str(tmp_path / "h"))
    os.makedirs(home.env)
    Path(home.folder, "backend.json").write_text(json.dumps({"python": sys.executable, "release": RELEASE}))
    view, closed = FakeView(), []

    class Remote:
        connected = True

        def close(self):
            closed.append(True)

    settings = Settings()
    settings.autostart, settings.endpoint = False, "tcp://127.0.0.1:5999"
    ctl = Controller(FakeBridge(), view, settings, clock=FakeClock(), home=home, bundle=Bundle(str(ROOT / "installer")))
    ctl.client = Remote()
    ctl.remove_backend()
    ctl.own.removing.join(30)
    ctl.own.tick()
    assert "the backend you use now stays connected" in view.last[0], view.last
    assert not closed and isinstance(ctl.client, Remote) and not os.path.exists(home.env)
    assert not view.setup or view.setup[-1][0] != "needed"
    ctl._require_idle_connection()  # a split goes on to the studio server
