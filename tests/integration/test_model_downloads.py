"""Model downloads into a models folder (hub_fetch: what the docker's Models list and `layeringdiff models fetch
--models-dir` use) against a hub stand-in on loopback that serves fake weights, drops the connection part-way
through a file and serves damaged files. Standard library only: these run in the base install too."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from layeringdiff.hub_fetch import BLOBS, Cancelled, FetchError, Store

from ..fakehub import FakeHub

BIG = "model.safetensors"  # served as an LFS file: checked by sha256


def make_repo(folder: Path, seed: int, shared: bytes = b"") -> Path:
    folder.mkdir(parents=True)
    rng = __import__("random").Random(seed)
    (folder / BIG).write_bytes(bytes(rng.getrandbits(8) for _ in range(3_000_000)))
    (folder / "config.json").write_text(json.dumps({"seed": seed}))  # not LFS: checked by its git blob id
    (folder / "sub").mkdir()
    (folder / "sub" / "vocab.txt").write_bytes(shared or f"vocab {seed}".encode())
    return folder


@pytest.fixture
def hub(tmp_path, monkeypatch):
    shared = b"a tokenizer file two models both have\n" * 1000
    hub = FakeHub({"org/alpha": make_repo(tmp_path / "alpha", 1, shared),
                   "org/beta": make_repo(tmp_path / "beta", 2, shared)})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    yield hub
    hub.close()


def same(a: Path, b: Path) -> bool:
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    return names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def test_a_dropped_connection_resumes_with_a_range_request(hub, tmp_path):
    hub.drop_after[BIG] = 1_000_000
    events = []
    store = Store(tmp_path / "models")
    folder = store.fetch("alpha", "org/alpha", report=events.append)
    assert same(folder, tmp_path / "alpha") and store.state("alpha") == "ready"
    assert hub.ranges == [(BIG, "bytes=1000000-")]  # the second request continued, it did not start over
    retry = next(e for e in events if e["event"] == "retry")
    assert retry["path"] == BIG and retry["at"] == 1_000_000
    assert events[-1] == {"event": "done", "model": "alpha", "total": 3_000_000 + len('{"seed": 1}') + 38_000}
    assert not (tmp_path / "models" / ".partial" / "alpha").exists()


def test_a_damaged_file_is_fetched_again_and_one_that_stays_damaged_is_refused(hub, tmp_path):
    store = Store(tmp_path / "models")
    hub.corrupt[BIG] = 1
    assert same(store.fetch("alpha", "org/alpha"), tmp_path / "alpha")
    hub.corrupt["config.json"] = 2  # a git-hashed file, damaged on every try
    with pytest.raises(FetchError, match="config.json of 'beta' does not match the hub's hash twice"):
        store.fetch("beta", "org/beta")
    assert store.state("beta") == "partial"  # never ready, and the next fetch resumes the rest
    assert not any(p.name.startswith("git-") and "seed\": 2" in p.read_text(errors="ignore")
                   for p in (tmp_path / "models" / BLOBS).iterdir())
    assert same(store.fetch("beta", "org/beta"), tmp_path / "beta") and store.state("beta") == "ready"


def test_a_file_two_models_share_is_stored_once_and_deleting_keeps_what_the_other_uses(hub, tmp_path):
    store = Store(tmp_path / "models")
    a, b = store.fetch("alpha", "org/alpha"), store.fetch("beta", "org/beta")
    assert os.stat(a / "sub" / "vocab.txt").st_ino == os.stat(b / "sub" / "vocab.txt").st_ino
    assert len(list((tmp_path / "models" / BLOBS).iterdir())) == 5  # 2 x (weights + config) + 1 shared
    assert store.holds("alpha") and not store.holds("gamma")
    freed = store.delete("alpha")
    assert freed == 3_000_000 + len('{"seed": 1}')  # the shared file stays for beta
    assert not store.holds("alpha")
    assert store.state("alpha") == "missing" and same(b, tmp_path / "beta")
    store.delete("beta")
    assert list((tmp_path / "models" / BLOBS).iterdir()) == []


def test_a_cancelled_download_is_partial_and_the_next_fetch_resumes_it(hub, tmp_path):
    store = Store(tmp_path / "models")
    seen = threading.Event()

    def report(event):
        if event["event"] == "download" and event["path"] == BIG:
            seen.set()

    with pytest.raises(Cancelled):
        store.fetch("alpha", "org/alpha", report=report, cancelled=seen.is_set)
    assert store.state("alpha") == "partial"
    part = next((tmp_path / "models" / ".partial" / "alpha").glob("*.part"))
    kept = part.stat().st_size
    assert 0 < kept < 3_000_000
    assert same(store.fetch("alpha", "org/alpha"), tmp_path / "alpha")
    assert (BIG, f"bytes={kept}-") in hub.ranges


def test_disk_space_is_checked_before_any_download(hub, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(FetchError, match=r"not enough disk space for 'alpha' .*: 0.00 GB needed, 0.00 GB free"):
        Store(tmp_path / "models").fetch("alpha", "org/alpha")
    assert not [r for r in hub.requests if "resolve" in r[1]]


def test_a_broken_model_is_said_so(hub, tmp_path):
    store = Store(tmp_path / "models")
    store.fetch("alpha", "org/alpha")
    (tmp_path / "models" / "alpha" / BIG).unlink()
    assert store.state("alpha") == "broken"


def test_the_command_line_the_docker_runs(hub, tmp_path):
    """`models fetch --events`, `models list --json` and `models delete` with a registry model served by the hub
    stand-in under its real id."""
    from layeringdiff.models import REGISTRY

    lama = REGISTRY["lama"]
    repo = tmp_path / "lama"
    repo.mkdir()
    (repo / "lama_fp32.onnx").write_bytes(hashlib.sha256(b"weights").digest() * 40_000)
    (repo / "README.md").write_text("LaMa")
    hub.repos[lama.hub_id] = repo
    models = tmp_path / "models"
    env = dict(os.environ, HF_ENDPOINT=hub.url)
    run = lambda *args: subprocess.run([sys.executable, "-m", "layeringdiff", "models", *args, "--models-dir",  # noqa: E731
                                        str(models)], capture_output=True, text=True, timeout=120, env=env)
    out = run("fetch", "lama", "--events")
    assert out.returncode == 0, out.stderr
    events = [json.loads(ln.split(" ", 1)[1]) for ln in out.stdout.splitlines() if ln.startswith("@layeringdiff ")]
    assert [e["event"] for e in events][0] == "model" and events[-1]["event"] == "done"
    assert same(models / "lama", repo)
    listed = list(map(json.loads, run("list", "--json").stdout.splitlines()))
    rows = {r["model"]: r for r in listed if "model" in r}
    assert listed[-1].keys() >= {"device", "total_gib"}  # the backend's GPU, last (none here: total_gib 0)
    assert rows["lama"]["state"] == "ready" and rows["lama"]["licence"] == "Apache-2.0"
    assert rows["lama"]["enables"] == "Hidden part: LaMa fill" and rows["lama"]["size_gb"] == lama.size_gb
    assert rows["sdxl"]["state"] == "missing" and rows["layering"]["fetchable"] is False
    assert "deleted lama" in run("delete", "lama").stdout and not (models / "lama").exists()
    assert "lama: nothing to delete in" in run("delete", "lama").stdout  # not "deleted" a second time
