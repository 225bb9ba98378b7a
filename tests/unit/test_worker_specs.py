"""How the server divides the machine among its workers (ServerConfig.worker_specs)."""

import pytest
from layeringdiff.serve.server import ServerConfig


@pytest.mark.parametrize(("cores", "config", "expected"), [
    (2, {}, [("auto", 2)]),  # one worker: all the cores
    (2, {"workers": 2}, [("auto", 2), ("auto", 2)]),  # twice the share, capped at the cores
    (16, {"workers": 4}, [("auto", 8)] * 4),
    (16, {"workers": 3}, [("auto", 10)] * 3),
    (4, {"workers": 8}, [("auto", 1)] * 8),  # never below one
    (16, {"devices": ("cuda:0", "cuda:1")}, [("cuda:0", 16), ("cuda:1", 16)]),  # no CPU worker: no sharing
    (16, {"devices": ("cuda:0",), "workers": 2}, [("cuda:0", 16), ("cpu", 16), ("cpu", 16)]),
])
def test_each_cpu_worker_gets_twice_its_share_of_the_cores(monkeypatch, cores, config, expected):
    monkeypatch.setattr("layeringdiff.serve.server.os.cpu_count", lambda: cores)
    specs = ServerConfig(**config).worker_specs()
    assert [(s.models.device, s.threads) for s in specs] == expected
    assert [s.index for s in specs] == list(range(len(expected)))
