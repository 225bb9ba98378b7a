"""`layeringdiff models fetch` and the installer's --fetch-models against a hub stand-in on loopback, serving the
tiny models as repos under their real ids: downloads land where the backend then finds them."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from layeringdiff.errors import NotAvailable
from layeringdiff.models import REGISTRY, ModelConfig, ModelManager

from ..fakehub import FakeHub

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hub(tiny_models):
    root, _ = tiny_models
    hub = FakeHub({REGISTRY["sam"].hub_id: root / "sam", REGISTRY["vitmatte"].hub_id: root / "vitmatte"})
    yield hub
    hub.close()


def run(hub, tmp_path, *args, program=("-m", "layeringdiff")):
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf-home"), **hub.env())
    env.pop("HF_HUB_OFFLINE", None)
    return subprocess.run([sys.executable, *program, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300)


def same_files(a: Path, b: Path) -> bool:
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file() and ".cache" not in p.parts)
    return names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def test_fetch_into_a_models_dir_then_the_backend_uses_it(hub, tiny_models, tmp_path):
    root, _ = tiny_models
    models = tmp_path / "models"
    out = run(hub, tmp_path, "models", "fetch", "sam", "vitmatte", "--models-dir", models)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(models / "sam"), str(models / "vitmatte")]
    assert "fetching sam (facebook/sam-vit-base" in out.stderr
    assert same_files(models / "sam", root / "sam") and same_files(models / "vitmatte", root / "vitmatte")
    listing = run(hub, tmp_path, "models", "list", "--models-dir", models, "--offline").stdout
    assert [line.split()[1] for line in listing.splitlines() if line.split()[0] in ("sam", "vitmatte")] == \
        ["ready", "ready"]
    ModelManager(ModelConfig(device="cpu").with_models_dir(str(models))).sam()  # loads from the folder
    # fetching again checks the folder against the hub instead of taking it as a finished local copy
    hub.requests.clear()
    assert run(hub, tmp_path, "models", "fetch", "sam", "--models-dir", models).returncode == 0
    assert ("GET", "api/models/facebook/sam-vit-base/revision/main") in hub.requests


def test_fetch_into_the_hub_cache_then_offline_loading_finds_it(hub, tmp_path):
    assert run(hub, tmp_path, "models", "fetch", "sam").returncode == 0
    listing = run(hub, tmp_path, "models", "list", "--offline").stdout
    assert next(line for line in listing.splitlines() if line.startswith("sam")).split()[1] == "ready"


def test_one_failure_names_the_model_and_the_others_still_come(hub, tmp_path):
    out = run(hub, tmp_path, "models", "fetch", "sdxl", "sam", "--models-dir", tmp_path / "m")
    assert out.returncode == 2 and (tmp_path / "m" / "sam" / "config.json").is_file()
    assert "could not fetch 'sdxl' from stabilityai/stable-diffusion-xl-base-1.0" in out.stderr
    assert "--model sdxl=/path/to/folder" in out.stderr and "not fetched: sdxl" in out.stderr
    assert "Traceback" not in out.stderr
    out = run(hub, tmp_path, "models", "fetch", "layering")
    assert out.returncode == 2 and "no public 'layering' weights" in out.stderr and "train fbdd" in out.stderr


def test_not_enough_disk_space_is_said_before_downloading(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 10**8, 10**8))
    with pytest.raises(NotAvailable, match="not enough disk space for 'sdxl'") as info:
        ModelManager().fetch("sdxl", into=str(tmp_path))
    assert "6.9 GB needed, 0.1 GB free" in info.value.text


def test_installer_fetches_models_and_points_the_docker_at_them(hub, tiny_models, tmp_path):
    root, _ = tiny_models
    rc, models = tmp_path / "kritarc", tmp_path / "models"
    out = run(hub, tmp_path, "--pykrita", tmp_path / "pykrita", "--kritarc", rc, "--backend-python", sys.executable,
              "--krita-python", sys.executable, "--fetch-models", "sam", "--models-dir", models,
              program=(str(ROOT / "installer" / "install.py"),))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "model weights fetched" in out.stdout and same_files(models / "sam", root / "sam")
    assert f'"models_dir": "{models}"' in rc.read_text().replace("\\\\", "\\")
    out = run(hub, tmp_path, "--pykrita", tmp_path / "pykrita", "--kritarc", rc, "--backend-python", sys.executable,
              "--krita-python", sys.executable, "--fetch-models", "sdxl",
              program=(str(ROOT / "installer" / "install.py"),))
    assert out.returncode == 1 and "run the same command again" in out.stderr
    assert (tmp_path / "pykrita" / "layeringdiff_krita").is_dir()  # the plugin is installed all the same
