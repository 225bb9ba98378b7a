"""The CLI's layered files in the real GIMP 3 (GIMP 3.2 from Debian sid, in the Krita 5.3 root: `--krita=5.3`),
in batch mode with its own Python: a `.psd` flattens to the input within 2/255 as it comes, and an `.ora` does so
once every layer's composite space is perceptual, the README's advice; with GIMP's default (linear light) the
`.ora`'s soft edges move, which is why the README sends GIMP users to the `.psd`."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .test_krita_e2e import card_disc_ball

pytestmark = [pytest.mark.krita]


# run by GIMP's python-fu-eval: each (file, composite space) flattened and saved as PNG
FLATTEN = '''
from gi.repository import Gimp, Gio
def walk(items):
    for item in items:
        yield item
        if item.is_group():
            yield from walk(item.get_children())
for src, space, out in JOBS:
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(src))
    if space == "perceptual":
        for layer in walk(image.get_layers()):
            layer.set_composite_space(Gimp.LayerColorSpace.RGB_PERCEPTUAL)
    image.flatten()
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(out), None)
    image.delete()
'''


def layered(tmp_path: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "layeringdiff", "split", *map(str, args), "--no-png", "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def as_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255


def test_gimp_3_flattens_the_psd_and_the_ora_with_perceptual_layers_to_the_input(krita_target, tmp_path):
    if "gimp" not in krita_target.stamp.get("recipe", "").split():
        pytest.skip(f"GIMP 3 is in the Debian sid root of Krita 5.3 (--krita=5.3), not in {krita_target.name}")
    found = sorted((krita_target.root / "usr/bin").glob("gimp-console-3.*"))
    assert found, f"the {krita_target.name} root was built with GIMP but has no gimp-console-3.x"
    gimp = found[-1].name
    w, h = 320, 256
    rgb, card, disc, ball = card_disc_ball(w, h)
    labels = np.zeros((h, w), np.uint8)
    labels[card > 0], labels[ball > 0], labels[disc > 0] = 3, 2, 1
    Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).save(tmp_path / "scene.png")
    Image.fromarray(labels, "L").save(tmp_path / "labels.png")
    Image.fromarray(disc).save(tmp_path / "mask.png")
    for name in ("objects.psd", "objects.ora"):  # three objects and the background in a group
        layered(tmp_path, tmp_path / "scene.png", "--labels", tmp_path / "labels.png", "-o", tmp_path / name)
    layered(tmp_path, tmp_path / "scene.png", "--mask", tmp_path / "mask.png", "-o", tmp_path / "one.psd")
    jobs = [(str(tmp_path / src), space, str(tmp_path / f"gimp_{Path(src).stem}_{Path(src).suffix[1:]}_{space}.png"))
            for src, space in (("objects.psd", "default"), ("one.psd", "default"), ("objects.ora", "default"),
                               ("objects.ora", "perceptual"))]
    home = tmp_path / "gimp-home"  # GIMP's profile folder, not the user's
    home.mkdir()
    proc = subprocess.run(krita_target.command(["/usr/bin/env", f"HOME={home}", gimp, "-i", "-d", "-f", "--quit",
                                                "--batch-interpreter=python-fu-eval",
                                                "-b", f"JOBS = {jobs!r}\n{FLATTEN}"]),
                          capture_output=True, text=True, timeout=300, env={**os.environ, "LANG": "C.UTF-8"})
    picture = as_rgb(tmp_path / "scene.png")
    flattened = {}
    for src, space, out in jobs:
        assert Path(out).exists(), f"GIMP 3 wrote no {out} (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        flattened[(Path(src).name, space)] = np.abs(as_rgb(Path(out)) - picture).max(axis=-1)
    for key in (("objects.psd", "default"), ("one.psd", "default"), ("objects.ora", "perceptual")):
        assert flattened[key].max() <= 2 / 255 + 1e-5, f"{key}: GIMP 3's flattened image is the picture"
    # GIMP's default for an .ora's layers composites in linear light: soft edges move (the README says so)
    assert flattened[("objects.ora", "default")].max() > 2 / 255
