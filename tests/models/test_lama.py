"""The `lama` fill (imaging/lama.py) with tiny ONNX models built here, of the same input and output names and shapes
as the Carve/LaMa-ONNX export (image 1x3x512x512 in 0..1, mask 1x1x512x512 with 1 = hole, output 1x3x512x512 in
0..255); and an export with other settings (size, mask polarity, value ranges, names) described by lama.json. The
model "inpaints" each hole pixel with a fixed colour, so where that colour lands shows the crop and blend."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the test extra is not installed")
pytest.importorskip("onnxruntime", reason="the test extra is not installed")
from layering_protocol import Split  # noqa: E402
from layeringdiff.errors import NotAvailable  # noqa: E402
from layeringdiff.imaging.lama import LamaContract, LamaModel, lama_fill  # noqa: E402
from layeringdiff.models import REGISTRY, ModelConfig, ModelManager, ModelMissing  # noqa: E402
from layeringdiff.pipeline import run_job  # noqa: E402
from layeringdiff.wire import from_array, to_array  # noqa: E402

from tests.lama_model import FILL, tiny_lama  # noqa: E402

from ..fakehub import FakeHub  # noqa: E402


@pytest.fixture(scope="module")
def lama_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lama")
    tiny_lama(folder / "lama_fp32.onnx")
    (folder / "README.md").write_text("tiny stand-in for Carve/LaMa-ONNX\n")
    return folder


def scene(h: int = 160, w: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.uniform(0.3, 0.7, (h, w, 3)).astype(np.float32)
    mask = np.zeros((h, w), np.float32)
    mask[50:110, 60:150] = 1.0
    return image, mask


def test_the_fill_pastes_the_models_output_into_the_hole_only(lama_dir):
    model = LamaModel(lama_dir)
    assert model.contract == LamaContract()  # no lama.json: the Carve export's settings
    image, _ = scene(300, 700)  # bigger than the model's 512 on one side: shrunk for it, brought back
    hole = np.zeros(image.shape[:2], bool)
    hole[100:200, 200:500] = True
    out = lama_fill(model)(image, hole)
    assert np.array_equal(out[~hole], image[~hole])
    assert np.abs(out[hole][:, None] - FILL).max() < 0.02  # a hole pixel gets what the model paints there
    assert np.abs(out[hole] - FILL).mean() < 0.005


def test_another_export_is_used_through_its_settings(tmp_path):
    """Size 64, mask 0 = hole, image in -1..1, output in 0..1, other tensor names: lama.json says so."""
    folder = tmp_path / "other-lama"
    tiny_lama(folder / "big-lama.onnx", size=64, names=("img", "msk", "result"), hole_value=0.0,
              in_range=(-1.0, 1.0), out_range=(0.0, 1.0))
    settings = {"file": "big-lama.onnx", "size": 64, "image_input": "img", "mask_input": "msk", "output": "result",
                "hole_value": 0.0, "input_range": [-1, 1], "output_range": [0, 1]}
    (folder / "lama.json").write_text(json.dumps(settings))
    image, mask = scene()
    out = lama_fill(LamaModel(folder))(image, mask > 0)
    assert np.array_equal(out[mask == 0], image[mask == 0])
    inner = np.zeros_like(mask, bool)
    inner[55:105, 65:145] = True  # the hole less a few pixels: its edge comes back blurred from 64 px
    assert np.abs(out[inner] - FILL).max() < 0.02 and np.abs(out[mask > 0] - FILL).mean() < 0.02
    # the same export with the default settings is refused with what to change
    (folder / "lama.json").write_text(json.dumps({"file": "big-lama.onnx"}))
    with pytest.raises(NotAvailable, match="the settings expect inputs") as info:
        LamaModel(folder)
    assert "'img'" in info.value.text and "set image_input, mask_input and output in" in info.value.detail
    (folder / "lama.json").write_text(json.dumps({"colour": 1}))
    with pytest.raises(NotAvailable, match="unknown setting"):
        LamaModel(folder)


def test_a_split_job_with_the_lama_fill(lama_dir):
    image, mask = scene()
    models = ModelManager(ModelConfig(paths={"lama": str(lama_dir)}))
    msg = Split(from_array(np.dstack([image, np.ones(mask.shape, np.float32)]), "u8", "RGBA"),
                mask=from_array(mask[..., None], "u8", "L"), options={"fill": "lama"})
    stages = []
    out = run_job(msg, lambda s, f: stages.append(s), models)
    assert out.info["fill"] == "lama" and out.info["method"] == "classical"
    assert "loading lama" in stages and "fill" in stages
    bg, fg = to_array(out.background), to_array(out.foreground)
    hidden = fg[..., 3] >= 0.999
    assert hidden.sum() > 3000
    assert np.abs(bg[..., :3][hidden] - FILL).mean() < 3 / 255  # the model's paint, through the 8-bit wire
    a = fg[..., 3:4]
    assert np.abs(a * fg[..., :3] + (1 - a) * bg[..., :3] - image).max() <= 2 / 255 + 1e-6


def test_a_missing_lama_model_fails_at_once_naming_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what an offline config sets; restored after the test
    image, mask = scene()
    msg = Split(from_array(image, "u8", "RGB"), mask=from_array(mask[..., None], "u8", "L"), options={"fill": "lama"})
    stages = []
    with pytest.raises(ModelMissing) as info:
        run_job(msg, lambda s, f: stages.append(s),
                ModelManager(ModelConfig(offline=True, cache_dir=str(tmp_path / "empty-hf-cache"))))
    assert "model 'lama' (Carve/LaMa-ONNX" in info.value.text
    assert "layeringdiff models fetch lama" in info.value.detail
    assert not any(s in stages for s in ("trimap", "matting"))  # before any work
    with pytest.raises(ModelMissing, match="folder .* does not exist"):
        ModelManager(ModelConfig(paths={"lama": str(tmp_path / "nowhere")})).lama()


def test_without_huggingface_hub_each_model_names_its_own_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as on a base install: the import fails
    manager = ModelManager(ModelConfig(cache_dir=str(tmp_path / "empty-hf-cache")))
    with pytest.raises(ModelMissing) as lama:
        manager.resolve("lama")
    assert "huggingface_hub is not installed" in lama.value.text
    assert lama.value.detail.startswith("pip install 'layeringdiff[lama]'; then ")  # not the ml extra
    assert "layeringdiff models fetch lama" in lama.value.detail
    with pytest.raises(ModelMissing) as vitmatte:
        manager.resolve("vitmatte")
    assert "layeringdiff[ml]" in vitmatte.value.detail


def cli(tmp_path: Path, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    return subprocess.run([sys.executable, "-m", "layeringdiff", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={**base, "HF_HOME": str(tmp_path / "hf-home"), **(env or {})})


def test_cli_fill_lama_and_its_missing_model_error(lama_dir, tmp_path):
    from layeringdiff.io.images import save_png

    image, mask = scene()
    save_png(tmp_path / "in.png", image)
    save_png(tmp_path / "mask.png", mask)
    out = cli(tmp_path, "split", tmp_path / "in.png", "--mask", tmp_path / "mask.png", "-o", tmp_path / "o.ora",
              "--fill", "lama", "--model", f"lama={lama_dir}")
    assert out.returncode == 0, out.stderr
    from layeringdiff.io.images import load_image

    bg = load_image(tmp_path / "o_background.png")
    assert np.abs(bg[70:90, 90:120, :3] - FILL).max() < 3 / 255  # deep inside the hidden region
    missing = cli(tmp_path, "split", tmp_path / "in.png", "--mask", tmp_path / "mask.png", "-o", tmp_path / "m.ora",
                  "--fill", "lama", "--offline")
    assert missing.returncode == 2 and "model 'lama'" in missing.stderr
    assert "layeringdiff models fetch lama" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "m.ora").exists()


def test_models_fetch_lama_takes_only_the_export_it_uses(lama_dir, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("lama_fp32.onnx", "README.md"):
        (repo / name).write_bytes((lama_dir / name).read_bytes())
    (repo / "lama.onnx").write_bytes(b"another export, 207 MB in the real repo")
    (repo / "output_onnx.png").write_bytes(b"sample picture")
    hub = FakeHub({REGISTRY["lama"].hub_id: repo})
    try:
        env = {**hub.env()}
        out = cli(tmp_path, "models", "fetch", "lama", "--models-dir", tmp_path / "models", env=env)
        assert out.returncode == 0, out.stderr
        got = sorted(p.name for p in (tmp_path / "models" / "lama").iterdir() if p.is_file())
        assert got == ["README.md", "lama_fp32.onnx"]
        # and the backend then finds it in the models folder
        assert isinstance(ModelManager(ModelConfig().with_models_dir(str(tmp_path / "models"))).lama(), LamaModel)
        listing = cli(tmp_path, "models", "list", "--models-dir", tmp_path / "models", "--offline")
        assert next(ln for ln in listing.stdout.splitlines() if ln.startswith("lama")).split()[1] == "ready"
    finally:
        hub.close()


@pytest.mark.parametrize("setting,words", [
    ({"input_range": 5}, "two different numbers"), ({"context": "0.3"}, "a number from 0 to 4"),
    ({"size": True}, "whole number"), ({"file": ""}, "non-empty text"), ({"hole_value": 2}, "from 0 to 1"),
    ({"output_range": [1, 1]}, "two different numbers"),
])
def test_a_bad_setting_in_lama_json_is_named(tmp_path, setting, words):
    (tmp_path / "lama.json").write_text(json.dumps(setting))
    with pytest.raises(NotAvailable, match=words) as info:
        LamaContract.load(tmp_path)
    assert next(iter(setting)) in info.value.text


def test_an_oblong_hole_reaches_the_model_unsquashed(lama_dir, monkeypatch):
    """A wide hole's box is grown to a square before it is resized to the model's square input."""
    from layeringdiff.imaging import lama as lama_module

    seen = []
    model = LamaModel(lama_dir)
    real_run = model.run
    monkeypatch.setattr(model, "run", lambda image, hole: seen.append(hole) or real_run(image, hole))
    image = np.full((300, 900, 3), 0.5, np.float32)
    hole = np.zeros((300, 900), bool)
    hole[140:160, 100:800] = True  # 700 x 20
    out = lama_module.lama_fill(model)(image, hole)
    ys, xs = np.nonzero(seen[0])
    aspect = (xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1)
    assert 25 < aspect < 45  # the hole's own 35:1, not squashed to 1:1 by the square input
    assert np.array_equal(out[~hole], image[~hole])
    assert np.abs(out[145:155, 110:790] - FILL).max() < 3 / 255  # the hole's middle (its edge is resampled)
