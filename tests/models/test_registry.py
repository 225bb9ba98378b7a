"""Model registry: sources, local folders, config files, and immediate errors for missing weights."""

import json
import os
import subprocess
import sys
import time

import pytest
from layeringdiff.errors import NotAvailable
from layeringdiff.models import REGISTRY, ModelConfig, ModelManager, ModelMissing, is_local


def test_defaults_are_the_real_hub_ids():
    assert REGISTRY["sdxl"].hub_id == "stabilityai/stable-diffusion-xl-base-1.0"
    assert REGISTRY["grounding-dino"].hub_id.startswith("IDEA-Research/grounding-dino-")
    assert REGISTRY["sam"].hub_id.startswith("facebook/sam-vit-")
    assert REGISTRY["vitmatte"].hub_id.startswith("hustvl/vitmatte-")
    assert REGISTRY["sd2-inpaint"].hub_id == "stabilityai/stable-diffusion-2-inpainting"
    assert "controlnet" in REGISTRY["controlnet-canny"].hub_id


@pytest.mark.parametrize("source,local", [("org/name", False), ("/models/sdxl", True), ("./sdxl", True),
                                          ("~/m", True), ("C:\\models", True)])
def test_is_local(source, local):
    assert is_local(source) == local


def test_missing_hub_model_fails_at_once_with_the_fix(tmp_path):
    manager = ModelManager(ModelConfig(cache_dir=str(tmp_path / "empty-cache")))
    t = time.monotonic()
    with pytest.raises(ModelMissing) as info:
        manager.resolve("sam")
    assert time.monotonic() - t < 2.0  # no download attempt, no retries
    assert "'sam'" in info.value.text and "facebook/sam-vit-base" in info.value.text
    assert "layeringdiff models fetch sam" in info.value.detail and "--model sam=" in info.value.detail


def test_missing_local_folder_is_named(tmp_path):
    manager = ModelManager(ModelConfig(paths={"vitmatte": str(tmp_path / "nope")}))
    with pytest.raises(ModelMissing, match="does not exist"):
        manager.resolve("vitmatte")


def test_require_names_every_missing_model(tmp_path):
    manager = ModelManager(ModelConfig(cache_dir=str(tmp_path)))
    with pytest.raises(ModelMissing) as info:
        manager.require(["sdxl", "sam", "vitmatte"])
    assert "sdxl, sam, vitmatte" in info.value.text
    assert "models fetch sdxl sam vitmatte" in info.value.detail


def test_config_file_models_dir_and_overrides(tmp_path):
    (tmp_path / "sam" / "sub").mkdir(parents=True)
    (tmp_path / "sam" / "sub" / "model.safetensors").write_bytes(b"x")  # its weights, a folder down
    (tmp_path / "vitmatte").mkdir()
    cfg_path = tmp_path / "models.json"
    cfg_path.write_text(json.dumps({"paths": {"sdxl": "/somewhere/sdxl"}, "device": "cpu", "dtype": "fp32"}))
    config = ModelConfig.load(cfg_path).with_models_dir(str(tmp_path)).with_overrides(["vitmatte=/x/vm"])
    assert config.paths == {"sdxl": "/somewhere/sdxl", "sam": str(tmp_path / "sam"), "vitmatte": "/x/vm"}
    assert config.device == "cpu" and config.source == str(cfg_path)
    manager = ModelManager(config)
    assert manager.resolve("sam") == str(tmp_path / "sam")
    status = {row["model"]: row["state"] for row in manager.status()}
    assert status["sam"] == "ready" and status["vitmatte"] == "missing"
    # a folder holding no weights (empty, or notes alone) is missing, and says why (before: listed as ready); the
    # listing's path is that reason, not the message cut at its first ': ' (inside the model's role)
    (tmp_path / "lama").mkdir()
    (tmp_path / "lama" / "README.md").write_text("notes")
    manager = ModelManager(ModelConfig().with_models_dir(str(tmp_path)))
    rows = {row["model"]: row for row in manager.status()}
    assert rows["lama"]["state"] == "missing" and rows["vitmatte"]["state"] == "missing"
    assert rows["lama"]["path"] == (f"folder {tmp_path / 'lama'} holds no weights file (.safetensors, .bin, .onnx, "
                                    ".pt, .pth, .ckpt)")
    assert rows["sam"]["state"] == "ready"
    assert all(not row["path"].startswith(("composite", "trimap")) for row in rows.values())


@pytest.mark.parametrize("content,words", [("{bad", "cannot read"), ('{"colour": 1}', "unknown key"),
                                           ('{"paths": {"sdxxl": "/x"}}', "unknown model"),
                                           # the wrong type was an internal error wherever it was read next
                                           ("[1, 2]", "must hold a JSON object"),
                                           ('{"paths": ["lama"]}', "'paths' in the model config"),
                                           ('{"paths": {"lama": 5}}', "'paths' in the model config"),
                                           ('{"offline": "yes"}', "'offline' in the model config .* true or false")])
def test_bad_config_files(tmp_path, content, words):
    path = tmp_path / "models.json"
    path.write_text(content)
    with pytest.raises(NotAvailable, match=words):
        ModelConfig.load(path)


def test_bad_override():
    with pytest.raises(NotAvailable, match="NAME=FOLDER"):
        ModelConfig().with_overrides(["sdxl"])


def test_offline_sets_the_hub_variable(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    ModelManager(ModelConfig(offline=True))
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    with pytest.raises(NotAvailable, match="offline"):
        ModelManager(ModelConfig(offline=True)).fetch("sam")


def test_cli_models_list_and_generate_without_weights(tmp_path):
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"))
    listing = subprocess.run([sys.executable, "-m", "layeringdiff", "models", "list"], capture_output=True, text=True,
                             env=env, timeout=60)
    assert listing.returncode == 0 and listing.stdout.count("missing") == len(REGISTRY)
    assert f"looked in the Hugging Face cache ({tmp_path / 'hf'}" in listing.stderr  # where a user would check
    t = time.monotonic()
    gen = subprocess.run([sys.executable, "-m", "layeringdiff", "generate", "[a cat] on a sofa", "-o",
                          str(tmp_path / "x.ora")], capture_output=True, text=True, env=env, timeout=60)
    assert time.monotonic() - t < 20  # an interpreter start plus imports, never a download
    assert gen.returncode == 2 and "sdxl" in gen.stderr and "models fetch" in gen.stderr


def test_without_the_ml_extra_the_message_says_so(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real(name, *a))
    with pytest.raises(NotAvailable) as info:
        ModelManager().require(["sdxl"])
    assert "ml extra" in info.value.text and "diffusers" in info.value.text and "layeringdiff[ml]" in info.value.detail


def test_models_list_lists_the_names_asked_about_and_refuses_unknown_ones(tmp_path):
    """Before: the names were ignored (all ten listed, an unknown one too, exit 0)."""
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"))

    def models(*args):
        return subprocess.run([sys.executable, "-m", "layeringdiff", "models", *args], capture_output=True,
                              text=True, env=env, timeout=60)

    listing = models("list", "sam", "lama")
    assert listing.returncode == 0 and [line.split()[0] for line in listing.stdout.splitlines()] == ["sam", "lama"]
    rows = [json.loads(line) for line in models("list", "vitmatte", "--json").stdout.splitlines()]
    assert [row.get("model") for row in rows] == ["vitmatte", None]  # and the GPU's row
    unknown = models("list", "no-such-model")
    assert unknown.returncode == 2 and "unknown model(s) ['no-such-model']" in unknown.stderr
    fetch = models("fetch", "lama", "--offline", "--models-dir", str(tmp_path / "m"))
    assert fetch.returncode == 2 and "offline is set (--offline, or \"offline\" in the model config)" in fetch.stderr
    assert "\n  \n" not in fetch.stderr
