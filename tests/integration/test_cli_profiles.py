"""A picture's colour profile on every layer written from it (io/profiles.py), and CMYK files converted through
theirs: the real CLI on real files."""

import io
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from layeringdiff.examples import example
from layeringdiff.io.profiles import colour_space, tag_png
from PIL import Image, ImageCms
from psd_tools import PSDImage
from psd_tools.constants import Resource

from tests.integration.test_cli import run

# a CMYK profile to make a CMYK file with: Ghostscript's, which GIMP brings along (libgs-common)
CMYK_PROFILE = Path("/usr/share/color/icc/ghostscript/default_cmyk.icc")


def rgb_profile() -> bytes:
    """An RGB profile (lcms's sRGB: a test machine may have no other; no writer here adds one by itself, as
    test_an_untagged_picture_gives_untagged_layers checks)."""
    data = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert colour_space(data) == "RGB"
    return data


def picture() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    image, box = example("coffee")
    return (image * 255 + 0.5).astype(np.uint8), box


def profiles_in_ora(path: Path) -> dict[str, bytes | None]:
    with zipfile.ZipFile(path) as z:
        return {n: Image.open(io.BytesIO(z.read(n))).info.get("icc_profile") for n in z.namelist()
                if n.endswith(".png")}


@pytest.mark.parametrize("kind", ["png", "jpg"])
def test_every_layer_carries_the_picture_s_profile(tmp_path, kind):
    """An Adobe RGB or Display P3 picture's layers were written untagged (read as sRGB beside an original that kept
    its profile: up to 107/255 apart in Krita)."""
    icc = rgb_profile()
    pixels, box = picture()
    source = tmp_path / f"tagged.{kind}"
    Image.fromarray(pixels).save(source, icc_profile=icc, **({"quality": 95} if kind == "jpg" else {}))
    box_text = ",".join(map(str, box))
    proc = run("split", "-q", source, "--box", box_text, "-o", tmp_path / "t.ora")
    assert proc.returncode == 0, proc.stderr
    found = profiles_in_ora(tmp_path / "t.ora")
    assert set(found) == {"data/layer000.png", "data/layer001.png", "data/layer002.png", "mergedimage.png",
                          "Thumbnails/thumbnail.png"}
    assert all(p == icc for p in found.values()), {n: p is not None for n, p in found.items()}
    for name in ("t_foreground.png", "t_background.png"):
        assert Image.open(tmp_path / name).info.get("icc_profile") == icc
    assert "icc_profile" not in Image.open(tmp_path / "t_alpha.png").info  # grey: an RGB profile does not fit it
    proc = run("split", "-q", source, "--box", box_text, "-o", tmp_path / "t.psd", "--no-png")
    assert proc.returncode == 0, proc.stderr
    assert PSDImage.open(tmp_path / "t.psd").image_resources.get_data(Resource.ICC_PROFILE) == icc
    if kind == "png":  # GIMP 2.10 keeps the profile and composites the layers in it: the picture's own values
        from tests.integration.test_cli_psd import as_rgb, gimp_flatten

        gimp_flatten(tmp_path / "t.psd", tmp_path / "flat.png")
        assert np.abs(as_rgb(tmp_path / "flat.png") - pixels / 255).max() <= 2 / 255
        assert Image.open(tmp_path / "flat.png").info.get("icc_profile") == icc


def test_an_untagged_picture_gives_untagged_layers(tmp_path):
    pixels, box = picture()
    Image.fromarray(pixels).save(tmp_path / "plain.png")
    proc = run("split", "-q", tmp_path / "plain.png", "--box", ",".join(map(str, box)), "-o", tmp_path / "p.psd")
    assert proc.returncode == 0, proc.stderr
    assert PSDImage.open(tmp_path / "p.psd").image_resources.get_data(Resource.ICC_PROFILE) is None
    assert "icc_profile" not in Image.open(tmp_path / "p_foreground.png").info


def test_a_cmyk_picture_is_converted_through_its_profile(tmp_path):
    """Pillow's plain CMYK formula was up to 48/255 off a colour-managed conversion."""
    if not CMYK_PROFILE.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CMYK_PROFILE} is missing (apt-get install gimp brings it)")
        pytest.skip(f"{CMYK_PROFILE} is missing")
    pixels, box = picture()
    source = tmp_path / "print.jpg"
    Image.fromarray(pixels).convert("CMYK").save(source, icc_profile=CMYK_PROFILE.read_bytes(), quality=95)
    proc = run("split", source, "--box", ",".join(map(str, box)), "-o", tmp_path / "c.ora")
    assert proc.returncode == 0, proc.stderr
    assert "is CMYK: its layers are RGB (sRGB), converted through its colour profile" in proc.stderr
    with Image.open(source) as cmyk:
        managed = ImageCms.profileToProfile(
            cmyk, ImageCms.ImageCmsProfile(io.BytesIO(cmyk.info["icc_profile"])), ImageCms.createProfile("sRGB"),
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode="RGB",
            flags=ImageCms.Flags.BLACKPOINTCOMPENSATION)
        plain = np.asarray(cmyk.convert("RGB"), np.float32)
    managed = np.asarray(managed, np.float32)
    with zipfile.ZipFile(tmp_path / "c.ora") as z:
        original = np.asarray(Image.open(io.BytesIO(z.read("data/layer002.png"))).convert("RGB"), np.float32)
    assert np.abs(original - managed).max() <= 1
    assert np.abs(plain - managed).max() > 10  # the test can tell the two apart
    assert all(p is None for p in profiles_in_ora(tmp_path / "c.ora").values())  # sRGB now, as untagged is read


def grey_profile(gamma: float, name: str) -> bytes:
    """A grey display profile with a gamma curve (ICC v2: desc, wtpt, kTRC, cprt), made here: Photoshop's and
    Krita's grey profiles are of this kind, and a test machine may have none."""
    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    d50 = s15(0.9642) + s15(1.0) + s15(0.8249)
    text = name.encode() + b"\0"
    tags = [(b"desc", b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8 + 2 + 1 + 67)),
            (b"wtpt", b"XYZ " + bytes(4) + d50),
            (b"kTRC", b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)),
            (b"cprt", b"text" + bytes(4) + b"none\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for sig, data in tags:
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data + bytes(-len(data) % 4)
    header = (struct.pack(">I", offset + len(body)) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntrGRAYXYZ "
              + bytes(12) + b"acsp" + bytes(28) + d50 + bytes(48))
    assert len(header) == 128 and colour_space(header + table + body) == "GRAY"
    return header + table + body


@pytest.mark.parametrize("mode", ["L", "LA", "I;16"])
def test_a_grey_picture_is_converted_through_its_profile(tmp_path, mode):
    """A grey file's profile was dropped: its layers untagged, read as sRGB, a linear grey's tones 60/255 off."""
    pixels, box = picture()
    grey = np.asarray(Image.fromarray(pixels).convert("L"))
    if mode == "LA":
        img = Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]), "LA")
    elif mode == "I;16":
        img = Image.fromarray(grey.astype(np.uint16) * 257)
    else:
        img = Image.fromarray(grey, "L")
    source = tmp_path / "grey.png"
    img.save(source, icc_profile=grey_profile(1.0, "Grey linear"))
    proc = run("split", source, "--box", ",".join(map(str, box)), "-o", tmp_path / "g.ora")
    assert proc.returncode == 0, proc.stderr
    assert "is grey with its own colour profile (Grey linear): its layers are RGB (sRGB), converted through it" in \
        proc.stderr
    managed = ImageCms.profileToProfile(
        Image.fromarray(grey, "L"), ImageCms.ImageCmsProfile(io.BytesIO(grey_profile(1.0, "Grey linear"))),
        ImageCms.createProfile("sRGB"), renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode="RGB",
        flags=ImageCms.Flags.BLACKPOINTCOMPENSATION)
    managed = np.asarray(managed, np.float32)
    with zipfile.ZipFile(tmp_path / "g.ora") as z:
        original = np.asarray(Image.open(io.BytesIO(z.read("data/layer002.png"))).convert("RGB"), np.float32)
    assert np.abs(original - managed).max() <= 1
    assert np.abs(managed - grey[..., None]).mean() > 30  # as sRGB it was this far off
    assert all(p is None for p in profiles_in_ora(tmp_path / "g.ora").values())  # sRGB, as untagged is read


def test_the_profile_goes_right_after_the_header_and_reads_back():
    import cv2

    icc = rgb_profile()
    ok, png = cv2.imencode(".png", np.zeros((3, 5, 3), np.uint8))
    tagged = tag_png(png.tobytes(), icc)
    assert tagged[37:41] == b"iCCP"  # after the signature (8) and IHDR (25), its length (4)
    with Image.open(io.BytesIO(tagged)) as img:
        img.load()  # the chunk's CRC checked
        assert img.info["icc_profile"] == icc and img.size == (5, 3)
    assert tag_png(png.tobytes(), None) == png.tobytes()
