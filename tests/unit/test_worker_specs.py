"""How the server divides the machine among its workers (ServerConfig.worker_specs)."""

import pytest
from layeringdiff.serve.server import ServerConfig


@pytest.mark.parametrize(("cores", "config", "expected"), [
    (2, {}, [("auto", 2)]),  # one worker: all the cores
    (2, {"workers": 2}, [("auto", 1), ("auto", 1)]),  # a core each
    (16, {"workers": 4}, [("auto", 4)] * 4),
    (16, {"workers": 3}, [("auto", 5)] * 3),
    (4, {"workers": 8}, [("auto", 1)] * 8),  # never below one
    (16, {"devices": ("cuda:0", "cuda:1")}, [("cuda:0", 16), ("cuda:1", 16)]),  # no CPU worker: no sharing
    (16, {"devices": ("cuda:0",), "workers": 2}, [("cuda:0", 8), ("cpu", 8), ("cpu", 8)]),
])
def test_each_cpu_worker_gets_its_share_of_the_cores(monkeypatch, cores, config, expected):
    monkeypatch.setattr("layeringdiff.serve.server.os.cpu_count", lambda: cores)
    specs = ServerConfig(**config).worker_specs()
    assert [(s.models.device, s.threads) for s in specs] == expected
    assert [s.index for s in specs] == list(range(len(expected)))


def test_a_worker_sets_its_thread_limits_before_numpy_scipy_and_opencv_are_imported():
    """What a spawned worker imports before worker_main runs: the module of its target and the classes of its
    arguments. OpenBLAS, numba and OpenCV read their thread counts when first imported."""
    import pickle
    import subprocess
    import sys

    from layeringdiff.serve.worker import worker_main

    spec = ServerConfig(workers=2).worker_specs()[0]
    script = ("import pickle, sys\n"
              "pickle.loads(sys.stdin.buffer.read())\n"
              "print(sorted(m for m in ('numpy', 'scipy', 'cv2', 'numba', 'torch', 'zmq') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], input=pickle.dumps((worker_main, spec)),
                         capture_output=True, check=True)
    assert out.stdout.decode().strip() == "[]"
