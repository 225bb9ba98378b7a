"""`layeringdiff split` as a user runs it: a real process, real files."""

import subprocess
import sys

import numpy as np
import pytest
from layeringdiff.examples import synthetic_composite
from layeringdiff.io.images import save_png
from layeringdiff.io.ora import flatten, read_ora
from PIL import Image


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "layeringdiff", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    comp, alpha, _, _ = synthetic_composite(160, 200, seed=1)
    save_png(d / "photo.png", comp)
    save_png(d / "mask.png", (alpha > 0.5).astype(np.float32))
    save_png(d / "empty.png", np.zeros_like(alpha))
    save_png(d / "full.png", np.ones_like(alpha))
    save_png(d / "small.png", np.ones((10, 10), np.float32))
    (d / "broken.png").write_bytes(b"\x89PNG not really")
    return d


def check_ora_recomposites(path, original_png):
    layers, w, h = read_ora(path)
    assert [la.name for la in layers] == ["foreground", "background", "original"]
    assert not layers[2].visible
    original = np.asarray(Image.open(original_png).convert("RGB"), np.float32) / 255
    merged = flatten(layers, w, h)
    assert merged.shape == (h, w, 4) and np.all(merged[..., 3] > 0.999)
    assert np.abs(merged[..., :3] - original).max() <= 1 / 255 + 1e-5


def test_split_with_mask(inputs, tmp_path):
    out = tmp_path / "result.ora"
    proc = run("split", inputs / "photo.png", "--mask", inputs / "mask.png", "-o", out)
    assert proc.returncode == 0, proc.stderr
    for name in ("foreground", "background", "alpha"):
        assert (tmp_path / f"result_{name}.png").is_file()
    assert Image.open(tmp_path / "result_foreground.png").mode == "RGBA"
    assert "done" in proc.stderr and "recomposition error" in proc.stderr
    check_ora_recomposites(out, inputs / "photo.png")


def test_split_with_box(inputs, tmp_path):
    out = tmp_path / "box.ora"
    proc = run("split", inputs / "photo.png", "--box", "40,20,160,140", "-o", out, "--no-png", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and not (tmp_path / "box_alpha.png").exists()
    check_ora_recomposites(out, inputs / "photo.png")


def test_split_bundled_example(tmp_path):
    proc = run("split", "--example", "coffee", "-o", tmp_path / "coffee.ora")
    assert proc.returncode == 0, proc.stderr
    layers, w, h = read_ora(tmp_path / "coffee.ora")
    assert (w, h) == (600, 400)
    fg_alpha = layers[0].pixels[..., 3]
    assert 0.2 < fg_alpha.mean() < 0.8


@pytest.mark.parametrize("args,words", [
    (["{d}/broken.png", "--mask", "{d}/mask.png"], "cannot read"),
    (["{d}/nothing.png", "--mask", "{d}/mask.png"], "no such file"),
    (["{d}/photo.png", "--mask", "{d}/small.png"], "sizes must match"),
    (["{d}/photo.png", "--mask", "{d}/empty.png"], "mask is empty"),
    (["{d}/photo.png", "--mask", "{d}/full.png"], "whole image"),
    (["{d}/photo.png"], "exactly one foreground hint"),
    (["{d}/photo.png", "--mask", "{d}/mask.png", "--box", "1,1,5,5"], "exactly one foreground hint"),
    (["{d}/photo.png", "--box", "500,500,600,600"], "outside"),
    (["--example", "unicorn"], "unknown example"),
])
def test_cli_errors(inputs, tmp_path, args, words):
    proc = run("split", *[a.format(d=inputs) for a in args], "-o", tmp_path / "x.ora")
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.ora").exists()


def test_bad_box_syntax(inputs, tmp_path):
    proc = run("split", inputs / "photo.png", "--box", "1,2,3", "-o", tmp_path / "x.ora")
    assert proc.returncode == 2 and "x0,y0,x1,y1" in proc.stderr


def test_missing_output_folder(inputs, tmp_path):
    proc = run("split", inputs / "photo.png", "--mask", inputs / "mask.png", "-o", tmp_path / "no" / "x.ora")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
