"""The docker's Models list, Krita-free: real child processes of `layeringdiff models ...` against a hub stand-in
on loopback (fake weights, a slow connection to cancel part-way), into the folder the backend is started with."""

import hashlib
import sys
import time

import pytest
from layeringdiff.models import REGISTRY
from layeringdiff_krita.models_panel import ModelsPanel

from ..fakehub import FakeHub
from .fakes import FakeView

WEIGHTS = "lama_fp32.onnx"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    repo = tmp_path / "lama-repo"
    repo.mkdir()
    (repo / WEIGHTS).write_bytes(hashlib.sha256(b"w").digest() * 100_000)  # 3.2 MB
    (repo / "README.md").write_text("LaMa")
    hub = FakeHub({REGISTRY["lama"].hub_id: repo})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    yield hub
    hub.close()


def pump(panel, until, timeout=90):
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        panel.tick()
        time.sleep(0.02)
    assert until()


def states(view):
    return {row["model"]: row["state"] for row in view.models[0]}


def test_list_download_cancel_resume_and_delete(hub, tmp_path):
    view, fetched = FakeView(), []
    models = tmp_path / "models"
    panel = ModelsPanel(view, lambda: [sys.executable, "-m", "layeringdiff"], lambda: str(models), fetched.append)
    panel.refresh()
    pump(panel, lambda: view.models[0])
    rows = {row["model"]: row for row in view.models[0]}
    assert list(rows) == list(REGISTRY)  # every model of the registry
    assert rows["lama"]["state"] == "missing" and rows["lama"]["licence"] == "Apache-2.0"
    assert rows["sdxl"]["enables"] == "Generate layered" and rows["sdxl"]["size_gb"] == 6.9
    assert rows["sdxl"]["gpu_gib"] == 6.46 and rows["lama"]["gpu_gib"] == 0  # the registry's weight memory
    # this machine has no GPU: the note says what Generate needs and that the backend runs on the CPU
    assert panel.gpu is not None and panel.gpu["total_gib"] == 0
    assert view.models[1].startswith("Generate layered needs about 7.5 GB of GPU memory for its models' weights")
    assert "the backend has no GPU to use" in view.models[1] and panel.fit_warning(["sdxl"]) == ""

    hub.slow[WEIGHTS] = 0.05  # 64 kB each 50 ms: long enough to cancel part-way
    assert panel.fetch("lama") == ""
    assert panel.fetch("sam").startswith("'lama' is downloading")  # one download at a time
    pump(panel, lambda: any(text.startswith("downloading ") and "MB/s" in text for _, text in view.model_progress))
    text = next(t for _, t in reversed(view.model_progress) if t.startswith("downloading"))
    assert "% (" in text and " of 3.2 MB" in text and "left)" in text, text
    panel.cancel()
    pump(panel, lambda: not panel.busy and view.models[0] and states(view)["lama"] == "partial")
    assert "cancelled" in view.messages[-1][0] and fetched == []

    del hub.slow[WEIGHTS]
    panel.fetch("lama")
    pump(panel, lambda: not panel.busy and states(view).get("lama") == "ready")
    assert fetched == ["lama"] and (models / "lama" / WEIGHTS).read_bytes() == \
        (hub.repos[REGISTRY["lama"].hub_id] / WEIGHTS).read_bytes()
    assert any(name == WEIGHTS and r.startswith("bytes=") for name, r in hub.ranges)  # resumed, not restarted
    assert "downloaded" in view.messages[-1][0]

    assert panel.delete("lama") == ""
    pump(panel, lambda: panel.deleting is None and states(view).get("lama") == "missing")
    assert not (models / "lama").exists()


def test_without_a_backend_the_list_says_to_set_it_up_first(tmp_path):
    view = FakeView()
    panel = ModelsPanel(view, lambda: [], lambda: str(tmp_path), lambda key: None)
    panel.refresh()
    assert view.models[0] == [] and view.models[1].startswith("Set up the backend first")
    assert "studio server" in view.models[1]
    assert panel.fetch("lama") == "Set up the backend first."


def test_a_failed_download_names_the_model_and_why(hub, tmp_path):
    view = FakeView()
    panel = ModelsPanel(view, lambda: [sys.executable, "-m", "layeringdiff"], lambda: str(tmp_path / "m"),
                        lambda key: None)
    panel.fetch("sam")  # the stand-in has no such repository
    pump(panel, lambda: not panel.busy)
    text, error = view.messages[-1]
    assert error and text.startswith("The download of 'sam' failed: could not fetch 'sam' from facebook/sam-vit-base")


def registry_rows() -> list:
    return [{"model": key, "gpu_gib": spec.gpu_gib, "offload_gib": spec.offload_gib} for key, spec in REGISTRY.items()]


@pytest.mark.parametrize("total,offload_on,words", [
    # Generate layered's weights: 7.55 GB at once; with CPU offload the SDXL UNet (4.78) and the split models (1.09)
    (24.0, False, "This GPU holds every model at once: leave CPU offload off."),
    (12.0, True, "leave CPU offload off (it is on: turn it off in Settings for speed)."),
    (8.0, False, "cannot hold every model at once (7.5 GB): use CPU offload in Settings, which keeps about 5.9 GB"),
    (8.0, True, "use CPU offload in Settings (it is on), which keeps about 5.9 GB"),
    (6.0, False, "Even with CPU offload Generate layered keeps about 5.9 GB on the GPU, more than this one's 5.5 GB"),
])
def test_the_models_note_proposes_cpu_offload_from_the_gpu_it_finds(total, offload_on, words):
    panel = ModelsPanel(FakeView(), lambda: [], lambda: "", lambda key: None, offload=lambda: offload_on)
    panel.rows = registry_rows()
    panel.gpu = {"device": "NVIDIA RTX", "total_gib": total}
    assert words in panel.memory_note(), panel.memory_note()
    assert panel.gpu_need(["sdxl", "grounding-dino", "sam", "vitmatte"], offload=True) == pytest.approx(
        4.78 + 0.64 + 0.35 + 0.10)
    assert panel.gpu_need(["sdxl", "controlnet-canny", "grounding-dino"], offload=True) == pytest.approx(4.78 + 0.64)
    panel.gpu = {"device": "", "total_gib": 0.0, "why": "no CUDA GPU"}
    assert panel.proposal(["sdxl"]) == "" and "runs on the CPU" in panel.memory_note()


def test_the_warning_before_a_generate_counts_cpu_offload_and_proposes_it():
    on = [False]
    panel = ModelsPanel(FakeView(), lambda: [], lambda: "", lambda key: None, offload=lambda: on[0])
    panel.rows = registry_rows()
    panel.gpu = {"device": "NVIDIA RTX 3070", "total_gib": 7.0}
    keys = ["sdxl", "grounding-dino", "sam", "vitmatte"]
    assert panel.fit_warning(keys).endswith("Turn on CPU offload in Settings: it keeps one model part on the GPU at "
                                            "a time.")
    on[0] = True
    assert panel.fit_warning(keys) == ""  # 5.9 GB offloaded fits 7 GB
    panel.gpu["total_gib"] = 5.0
    warning = panel.fit_warning(keys)
    assert "about 5.9 GB of GPU memory for their weights alone with CPU offload" in warning
    assert "Turn on" not in warning


@pytest.mark.parametrize("total,warned", [(6.0, True), (7.6, False), (24.0, False)])
def test_a_generate_that_would_not_fit_the_backends_gpu_is_warned_of(total, warned):
    """Weights of Generate layered (SDXL + stage 2 as loaded: 6.46 + 0.64 + 0.35 + 0.10 = 7.55 GB) against the GPU the
    list reported."""
    panel = ModelsPanel(FakeView(), lambda: [], lambda: "", lambda key: None)
    panel.rows = [{"model": key, "gpu_gib": spec.gpu_gib} for key, spec in REGISTRY.items()]
    panel.gpu = {"device": "NVIDIA RTX 4060", "total_gib": total}
    warning = panel.fit_warning(["sdxl", "grounding-dino", "sam", "vitmatte"])
    assert bool(warning) == warned
    if warned:
        assert "about 7.5 GB of GPU memory" in warning and "6.0 GB of the backend's NVIDIA RTX 4060" in warning
    assert f"; the backend's GPU: NVIDIA RTX 4060, {total:.1f} GB. " in panel.memory_note()
    assert "ControlNet adds 2.3 GB" in panel.memory_note()
