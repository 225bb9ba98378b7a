"""`split -o OUT.psd`: the same layers as the .ora in a layered Photoshop file, read back with psd-tools and
flattened by the real GIMP 2.10 (batch mode), which must give the input within 2/255 (GIMP composites an .ora's soft
edges in linear light, and Debian 12's GIMP cannot open .ora at all)."""

import os
import shutil
import subprocess

import numpy as np
import pytest
from layeringdiff.io.ora import LayerGroup, flatten, read_ora
from layeringdiff.io.psd import read_psd, write_psd
from PIL import Image
from psd_tools import PSDImage

from tests.integration.test_cli import inputs, run  # noqa: F401  (the module's fixture)
from tests.integration.test_cli_labels import files  # noqa: F401

GIMP = shutil.which("gimp-console-2.10") or shutil.which("gimp-console")


def gimp_batch(psd, script: str, made) -> None:
    """GIMP's own batch mode on `psd` (its profile folder beside it, not the user's); `made`: the file the script
    writes."""
    if GIMP is None:
        if os.environ.get("CI"):
            pytest.fail("GIMP is not installed (apt-get install gimp): the .psd cannot be checked in it")
        pytest.skip("GIMP is not installed")
    proc = subprocess.run([GIMP, "-i", "-d", "-f", "-b", f"{script} (gimp-quit 0)"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HOME": str(psd.parent)})
    assert made.exists(), proc.stderr[-2000:]


def gimp_flatten(psd, png) -> None:
    """Load, flatten (hidden layers dropped), save as PNG."""
    gimp_batch(psd, f'(let* ((image (car (gimp-file-load RUN-NONINTERACTIVE "{psd}" "{psd}"))) '
                    f'(layer (car (gimp-image-flatten image)))) '
                    f'(file-png-save RUN-NONINTERACTIVE image layer "{png}" "{png}" 0 1 0 0 0 0 0))', png)


def gimp_names(psd, txt) -> list[str]:
    """The names of the image's top-level layers and groups, as GIMP's PSD loader reads them."""
    gimp_batch(psd, f'(let* ((image (car (gimp-file-load RUN-NONINTERACTIVE "{psd}" "{psd}"))) '
                    f'(port (open-output-file "{txt}"))) '
                    '(for-each (lambda (l) (display (car (gimp-item-get-name l)) port) (newline port)) '
                    '(vector->list (cadr (gimp-image-get-layers image)))) (close-output-port port))', txt)
    return txt.read_text(encoding="utf-8").splitlines()


def placed(layer, w: int, h: int) -> np.ndarray:
    """A layer cropped to what shows, put back on its canvas (nothing composited)."""
    canvas = np.zeros((h, w, 4), np.float32)
    lh, lw = layer.pixels.shape[:2]
    canvas[layer.y:layer.y + lh, layer.x:layer.x + lw] = layer.pixels
    return canvas


def as_rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255


def test_a_split_into_a_psd_holds_the_ora_s_layers_and_gimp_flattens_it_to_the_input(inputs, tmp_path):  # noqa: F811
    proc = run("split", inputs / "photo.png", "--mask", inputs / "mask.png", "-o", tmp_path / "out.psd")
    assert proc.returncode == 0, proc.stderr
    names = ["out.psd", "out_foreground.png", "out_background.png", "out_alpha.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    layers, w, h = read_psd(tmp_path / "out.psd")
    assert [(group, la.name, la.visible) for group, la in layers] == [
        ("", "foreground", True), ("", "background", True), ("", "original", False)]
    original = as_rgb(inputs / "photo.png")
    merged = flatten([la for _, la in layers], w, h)
    assert np.abs(merged[..., :3] - original).max() <= 1 / 255 + 1e-5
    stored = np.asarray(PSDImage.open(tmp_path / "out.psd").topil().convert("RGB"), np.float32) / 255
    assert np.array_equal(stored, original)  # the file's composite, what viewers show: the input itself
    # the same pixels as the .ora's layers and the PNGs beside it
    assert run("split", inputs / "photo.png", "--mask", inputs / "mask.png", "-o", tmp_path / "same.ora",
               "--no-png").returncode == 0
    ora, _, _ = read_ora(tmp_path / "same.ora")
    assert np.array_equal(placed(layers[0][1], w, h), ora[0].pixels)
    assert np.array_equal(placed(layers[1][1], w, h), ora[1].pixels)
    png = np.asarray(Image.open(tmp_path / "out_foreground.png").convert("RGBA"), np.float32) / 255
    assert np.array_equal(png, ora[0].pixels)
    gimp_flatten(tmp_path / "out.psd", tmp_path / "gimp.png")
    assert np.abs(as_rgb(tmp_path / "gimp.png") - original).max() <= 2 / 255 + 1e-5


def test_objects_from_labels_into_a_psd(files, tmp_path):  # noqa: F811
    d, _ = files
    proc = run("split", d / "scene.png", "--labels", d / "labels.png", "-o", tmp_path / "out.psd", "--no-png")
    assert proc.returncode == 0, proc.stderr
    layers, w, h = read_psd(tmp_path / "out.psd")
    assert [(g, la.name) for g, la in layers] == [("scene split", "object 1"), ("scene split", "object 2"),
                                                  ("scene split", "object 3"), ("scene split", "background"),
                                                  ("", "original")]
    original = as_rgb(d / "scene.png")
    assert np.abs(flatten([la for _, la in layers], w, h)[..., :3] - original).max() <= 1 / 255 + 1e-5
    gimp_flatten(tmp_path / "out.psd", tmp_path / "gimp.png")
    assert np.abs(as_rgb(tmp_path / "gimp.png") - original).max() <= 2 / 255 + 1e-5


@pytest.mark.parametrize("stem", ["\u732b \u00e9t\u00e9 \U0001f3a8", "n" * 251])
def test_a_labels_split_of_a_picture_named_outside_mac_roman_or_long_is_written(files, tmp_path, stem):  # noqa: F811
    """The group is named after the picture ("<name> split"): a name outside Mac Roman (Chinese, an emoji), or over
    255 characters with " split", stopped the .psd after the whole split had run (psd-tools writes a group's Pascal
    name as it is given). Now the Pascal name is "?" or cut at 255, the Unicode name whole (cut at 255), and GIMP
    reads the Unicode one."""
    d, _ = files
    image = tmp_path / f"{stem}.png"
    shutil.copy(d / "scene.png", image)
    proc = run("split", image, "--labels", d / "labels.png", "-o", tmp_path / "out.psd", "--no-png")
    assert proc.returncode == 0, proc.stderr
    group = f"{stem} split"[:255]
    layers, w, h = read_psd(tmp_path / "out.psd")
    assert [g for g, _ in layers] == [group] * 4 + [""]
    assert gimp_names(tmp_path / "out.psd", tmp_path / "names.txt") == [group, "original"]


def test_the_file_s_composite_keeps_the_picture_s_transparency(tmp_path):
    """The merged image's fourth channel is transparency (a negative layer count says so), so a viewer or psd-tools
    shows a transparent picture as it is, not black where it is clear."""
    from layeringdiff.io.ora import OraLayer

    front = np.zeros((30, 40, 4), np.float32)
    front[5:15, 20:35] = (0.9, 0.2, 0.1, 0.5)
    write_psd(tmp_path / "t.psd", [OraLayer("front", front)], 40, 30, front)
    shown = PSDImage.open(tmp_path / "t.psd").topil()
    assert shown.mode == "RGBA"
    assert np.array_equal(np.asarray(shown)[..., 3], np.round(front[..., 3] * 255).astype(np.uint8))
    # its colours too where it is half clear: stored over white, as Photoshop does, and read back by taking that off
    # (stored as they were, this pixel read (0.0, 0.0, 0.0))
    assert np.abs(np.asarray(shown)[10, 25, :3] / 255 - front[10, 25, :3]).max() <= 1.5 / 255


def test_a_transparent_psd_given_as_the_picture_is_read_as_it_is_not_over_white(tmp_path):
    """A .psd as IMAGE (this tool's own, split again): its composite's colours are stored over white, which reading
    takes off, as psd-tools and viewers do (kept, a pixel at alpha 90/255 read up to 58/255 too light)."""
    from layeringdiff.io.images import load_image
    from layeringdiff.io.ora import OraLayer

    rng = np.random.default_rng(0)
    picture = np.dstack([rng.integers(0, 120, (30, 40, 3)) / 255, np.full((30, 40), 90 / 255)]).astype(np.float32)
    picture[:, 20:, 3] = 1.0
    picture[:3, :3, 3] = 0.0
    write_psd(tmp_path / "t.psd", [OraLayer("front", picture)], 40, 30, picture)
    read = load_image(tmp_path / "t.psd")
    assert read.shape == (30, 40, 4)
    assert np.abs(read[..., 3] - picture[..., 3]).max() <= 0.5 / 255
    premultiplied = np.abs(read[..., :3] * read[..., 3:] - picture[..., :3] * picture[..., 3:])
    assert premultiplied.max() <= 1 / 255, premultiplied.max() * 255
    assert (read[:3, :3] == 0).all()


def test_groups_hidden_layers_and_offsets_survive_the_round_trip(tmp_path, monkeypatch):
    from layeringdiff.io.ora import OraLayer

    def recomposite(self):  # psd-tools' own refresh of the composite: float64 copies of every layer (GBs)
        raise AssertionError("the layers were composited again: the merged image given is the composite")

    monkeypatch.setattr(PSDImage, "_update_preview", recomposite)

    rng = np.random.default_rng(3)
    back = np.dstack([rng.random((30, 40, 3)), np.ones((30, 40))]).astype(np.float32)
    front = np.zeros((30, 40, 4), np.float32)
    front[5:15, 20:35] = (0.9, 0.2, 0.1, 0.5)
    layers = [LayerGroup("peel 1", [OraLayer("1 chat noir \u00e9t\u00e9 \u732b", front), OraLayer("background", back)]),
              OraLayer("original", back, visible=False)]
    merged = flatten([OraLayer("f", front), OraLayer("b", back)], 40, 30)
    write_psd(tmp_path / "g.psd", layers, 40, 30, merged)
    stored = np.asarray(PSDImage.open(tmp_path / "g.psd").topil().convert("RGB"))
    assert np.array_equal(stored, np.round(merged[..., :3] * 255).astype(np.uint8))
    read, w, h = read_psd(tmp_path / "g.psd")
    assert (w, h) == (40, 30)
    assert [(g, la.name, la.visible) for g, la in read] == [
        ("peel 1", "1 chat noir \u00e9t\u00e9 \u732b", True), ("peel 1", "background", True), ("", "original", False)]
    # every layer's name also as Unicode (Photoshop's 'luni'), which readers prefer to the padded Pascal name
    from psd_tools.constants import Tag

    records = [la._record for la in PSDImage.open(tmp_path / "g.psd").descendants()]
    assert all(Tag.UNICODE_LAYER_NAME in r.tagged_blocks for r in records)
    write_psd(tmp_path / "long.psd", [OraLayer("n" * 300, front)], 40, 30, front)  # a PSD name holds 255
    assert [la.name for _, la in read_psd(tmp_path / "long.psd")[0]] == ["n" * 255]
    assert (read[0][1].x, read[0][1].y, read[0][1].pixels.shape[:2]) == (20, 5, (10, 15))  # cropped to what shows
    assert np.abs(placed(read[0][1], 40, 30) - front).max() <= 0.5 / 255 + 1e-6


def test_a_picture_wider_than_a_psd_holds_is_refused_before_the_split(tmp_path):
    """Over 30000 px a side psd-tools writes a PSB whatever the name, which GIMP cannot open: refused from the
    header, with the .ora named instead; write_psd refuses it too."""
    from layeringdiff.io.images import save_png
    from layeringdiff.io.ora import OraLayer

    from tests.integration.test_cli import one_line_failure

    wide = np.zeros((4, 30_001, 3), np.float32)
    save_png(tmp_path / "strip.png", wide)
    proc = run("split", "-q", tmp_path / "strip.png", "--box", "0,0,20,4", "-o", tmp_path / "strip.psd")
    one_line_failure(proc, "a 30001x4 picture does not fit a .psd file (at most 30000 pixels a side")
    assert "-o NAME.ora" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["strip.png"]
    with pytest.raises(Exception, match="does not fit a .psd"):
        write_psd(tmp_path / "w.psd", [OraLayer("a", np.zeros((30_001, 2, 4), np.float32))], 2, 30_001,
                  np.zeros((30_001, 2, 4), np.float32))
