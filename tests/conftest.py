import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest


@contextlib.contextmanager
def in_process(config=None, **limits):
    """A Server bound on loopback in this process, its loop in a thread (its workers are processes, running the
    config's job_runner); `limits` replace fields of its Limits. Yields the server (its bookkeeping can be read),
    and stops and closes it after."""
    import dataclasses

    from layeringdiff.serve import Server

    server = Server(config)
    server.limits = dataclasses.replace(server.limits, **limits)
    server.bind()
    loop = threading.Thread(target=server.loop, daemon=True)
    loop.start()
    try:
        yield server
    finally:
        server.stop()
        loop.join(5)
        server.close()


@contextlib.contextmanager
def in_process_server(config=None, **limits):
    """in_process, yielding the endpoint."""
    with in_process(config, **limits) as server:
        yield server.endpoint


def pytest_addoption(parser):
    parser.addoption("--krita", default=os.environ.get("LAYERINGDIFF_KRITA", "host"),
                     help="Krita targets of tests/krita, comma-separated: host (this machine's Krita), 5.3, 6.0 "
                          "(Debian roots built on first use, see tests/krita/roots.py)")
def pytest_sessionstart(session):
    """Compile the image kernels once before any test starts a backend (`serve` would otherwise do it
    before READY on a fresh installation: a minute or two on a busy 2-core machine)."""
    from layeringdiff.prepare_kernels import ensure_prepared

    ensure_prepared(lambda text: print(f"\n{text}", file=sys.stderr, flush=True))


ROOT = Path(__file__).resolve().parents[1]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a backend started as a child process: the repository on the path (a test's job runner,
    tests/integration/runners.py, is imported by the workers), and before it the packages of a mutation-testing
    copy (tools/mutation.py stages them under src/) while a mutant is under test, so the child runs the mutant too.
    Not for mutmut's own passes ("stats", "fail"): its call recording in a server's every loop turn slowed a
    SIGTERM stop to 31 s, and those passes need only the tests' own process."""
    staged = ROOT / "src"
    mutant = "__mutmut_" in os.environ.get("MUTANT_UNDER_TEST", "")
    paths = [str(staged)] if mutant and (staged / "layeringdiff").is_dir() else []
    paths += [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths), **extra)


class BackendProcess:
    """`layeringdiff serve` as a real child process on loopback (or `command`, a server of its own)."""

    def __init__(self, *args: str, command: list[str] | None = None) -> None:
        env = child_env(PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            command or [sys.executable, "-m", "layeringdiff", "serve", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
        )
        # the log is read all along (as the plugin does): a full pipe would block the server's logging
        self._log: list[str] = []
        self._log_reader = threading.Thread(target=lambda: self._log.extend(self.proc.stderr), daemon=True)
        self._log_reader.start()
        self.endpoint = self._wait_ready(60)
        # and its (first) worker ready: a test that stresses the server at once would otherwise share the CPU with
        # the worker's imports (a second or two), and time that instead of the server
        deadline = time.monotonic() + 60
        while " ready: pid " not in self.log and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def log(self) -> str:
        """What the server wrote to stderr so far (all of it once it has exited)."""
        if self.proc.poll() is not None:
            self._log_reader.join(5)
        return "".join(list(self._log))

    def _wait_ready(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("READY "):
                    self.ready = dict(f.split("=", 1) for f in line.split()[2:])  # protocol, version, server_key
                    return line.split()[1]
            if self.proc.poll() is not None:
                raise RuntimeError(f"backend exited early: {self.log}")
        self.kill()
        raise RuntimeError("backend printed no READY line")

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> int:
        return self.terminate()


class ServerProcess(BackendProcess):
    """A Server with a config of the test's (a job runner of tests/integration/runners.py) in a child process."""

    def __init__(self, **config: object) -> None:
        script = ("import json, sys\nfrom layeringdiff.serve import Server, ServerConfig\n"
                  f"sys.exit(Server(ServerConfig(**json.loads({json.dumps(json.dumps(config))}))).run())")
        super().__init__(command=[sys.executable, "-c", script])


@pytest.fixture(scope="module")
def backend():
    server = BackendProcess()
    yield server
    server.terminate()


@pytest.fixture(scope="session")
def curve_keys(tmp_path_factory):
    """A keys folder (`layeringdiff keys init`) with one allowed machine, alice."""
    from layeringdiff.keys import add_client, init_keys

    folder = tmp_path_factory.mktemp("keys")
    init_keys(folder)
    add_client(folder, "alice")
    return folder


@pytest.fixture(scope="module")
def secure_backend(curve_keys):
    """The backend served on all interfaces with CURVE keys; `.local` is its loopback address."""
    server = BackendProcess("--host", "0.0.0.0", "--keys", str(curve_keys))
    server.local = "tcp://127.0.0.1:" + server.endpoint.rsplit(":", 1)[1]
    yield server
    server.terminate()


@pytest.fixture
def client(backend):
    from layeringdiff.client import Client

    with Client(backend.endpoint) as c:
        yield c


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Tiny random models of the real classes in one folder per model name (the --models-dir layout)."""
    pytest.importorskip("torch", reason="the ml extra is not installed")
    pytest.importorskip("diffusers", reason="the ml extra is not installed")
    from tests.models.tiny import build_all

    root = tmp_path_factory.mktemp("tiny-models")
    # stages 1-2 (and the depth model of Split into all layers) only: a missing sd2-inpaint/layering keeps jobs on
    # the fast classical layering path
    return root, build_all(root, only=("sdxl", "controlnet-canny", "controlnet-depth", "grounding-dino", "sam",
                                       "vitmatte", "depth-anything"))


@pytest.fixture(scope="session")
def tiny_layering_models(tmp_path_factory):
    """All tiny models, stage 3 included (SD2 inpainting and FBDD + HFA)."""
    pytest.importorskip("torch", reason="the ml extra is not installed")
    pytest.importorskip("diffusers", reason="the ml extra is not installed")
    from tests.models.tiny import build_all

    root = tmp_path_factory.mktemp("tiny-models-all")
    return root, build_all(root)


@pytest.fixture(scope="session")
def release_zip(tmp_path_factory):
    """dist/layeringdiff-krita-<release>.zip as `python3 installer/package.py` builds it (once a test session)."""
    from layering_protocol import RELEASE

    out = tmp_path_factory.mktemp("dist")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "installer" / "package.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / f"layeringdiff-krita-{RELEASE}.zip"
