"""Writing the split's files fast (issue 13): nothing encoded twice, the source PNG stored as it is."""

import zipfile
from xml.etree import ElementTree

import numpy as np
from layeringdiff.cli import main
from layeringdiff.examples import synthetic_composite
from layeringdiff.io.images import load_image, png_bytes, save_png
from layeringdiff.io.ora import OraLayer, read_ora, write_ora
from PIL import Image


def test_write_ora_reuses_given_and_shared_encodings(tmp_path):
    rng = np.random.default_rng(0)
    top = rng.uniform(0, 1, (12, 10, 4)).astype(np.float32)
    source = rng.uniform(0, 1, (12, 10, 3)).astype(np.float32)
    given = png_bytes(source)
    layers = [OraLayer("top", top), OraLayer("source", source, visible=False)]
    encoded = write_ora(tmp_path / "a.ora", layers, 10, 12, merged=source, encoded={"source": given})
    assert encoded["source"] is given and encoded["top"] == png_bytes(top)
    with zipfile.ZipFile(tmp_path / "a.ora") as zf:
        assert zf.read("data/layer001.png") == given
        assert zf.read("mergedimage.png") == given  # the merged image is the source: encoded once
        assert zf.read("data/layer000.png") == encoded["top"]
        thumb = Image.open(zf.open("Thumbnails/thumbnail.png"))
        assert thumb.size == (10, 12)


def test_cli_writes_each_png_once_and_keeps_the_source_file(tmp_path):
    comp, alpha, _, _ = synthetic_composite(96, 120, seed=1)
    save_png(tmp_path / "in.png", comp)
    save_png(tmp_path / "mask.png", (alpha > 0.5).astype(np.float32))
    assert main(["split", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"), "-o",
                 str(tmp_path / "out.ora"), "-q", "--fill", "smooth"]) == 0
    with zipfile.ZipFile(tmp_path / "out.ora") as zf:
        stack = ElementTree.fromstring(zf.read("stack.xml"))
        names = {el.attrib["name"]: el.attrib["src"] for el in stack.iter("layer")}
        assert zf.read(names["original"]) == (tmp_path / "in.png").read_bytes()
        assert zf.read("mergedimage.png") == (tmp_path / "in.png").read_bytes()
        for name in ("foreground", "background"):
            assert zf.read(names[name]) == (tmp_path / f"out_{name}.png").read_bytes()
    layers, w, h = read_ora(tmp_path / "out.ora")
    fg, bg = layers[0].pixels, layers[1].pixels
    a = fg[..., 3:4]
    assert np.abs(a * fg[..., :3] + (1 - a) * bg[..., :3] - load_image(tmp_path / "in.png")).max() <= 1.5 / 255
