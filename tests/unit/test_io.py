import zipfile

import numpy as np
import pytest
from layeringdiff.errors import InputError
from layeringdiff.io.images import load_image, load_mask, save_png
from layeringdiff.io.ora import MIMETYPE, LayerGroup, OraLayer, flatten, ora_groups, read_ora, write_ora
from layeringdiff.wire import from_array, to_array, to_mask
from PIL import Image


def test_ora_is_valid_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    top = rng.uniform(0, 1, (20, 30, 4)).astype(np.float32)
    top[0, :5, 3] = 0.0
    bottom = np.dstack([rng.uniform(0, 1, (20, 30, 3)), np.ones((20, 30))]).astype(np.float32)
    path = tmp_path / "x.ora"
    write_ora(path, [OraLayer("fg", top), OraLayer("bg", bottom), OraLayer("orig", bottom, visible=False)], 30, 20)
    with zipfile.ZipFile(path) as zf:
        first = zf.infolist()[0]
        assert first.filename == "mimetype" and first.compress_type == zipfile.ZIP_STORED
        assert zf.read("mimetype") == MIMETYPE
        assert {"stack.xml", "mergedimage.png", "Thumbnails/thumbnail.png"} <= set(zf.namelist())
    layers, w, h = read_ora(path)
    assert (w, h) == (30, 20) and [la.name for la in layers] == ["fg", "bg", "orig"]
    assert [la.visible for la in layers] == [True, True, False]
    shown = np.round(top[..., 3] * 255) > 0  # the colour of fully transparent pixels is not kept (written black)
    assert np.abs(layers[0].pixels - top)[shown].max() <= 0.5 / 255 + 1e-6
    assert (~shown).any() and np.all(layers[0].pixels[~shown] == 0)
    merged = np.asarray(Image.open(zipfile.ZipFile(path).open("mergedimage.png")), np.float32) / 255
    assert np.abs(merged - flatten(layers, 30, 20)).max() <= 1.5 / 255  # both from rounded layers


def test_a_group_is_a_nested_stack_and_a_hidden_group_hides_its_layers(tmp_path):
    from xml.etree import ElementTree

    rng = np.random.default_rng(1)
    front = rng.uniform(0, 1, (10, 12, 4)).astype(np.float32)
    back = np.dstack([rng.uniform(0, 1, (10, 12, 3)), np.ones((10, 12))]).astype(np.float32)
    other = np.dstack([rng.uniform(0, 1, (10, 12, 3)), np.ones((10, 12))]).astype(np.float32)
    items = [LayerGroup("peel", [OraLayer("cat", front), OraLayer("background", back)]),
             LayerGroup("old", [OraLayer("sketch", other)], visible=False), OraLayer("original", other, visible=False)]
    path = tmp_path / "g.ora"
    write_ora(path, items, 12, 10)
    root = ElementTree.fromstring(zipfile.ZipFile(path).read("stack.xml"))
    top = root.find("stack")
    assert [(c.tag, c.get("name"), c.get("visibility")) for c in top] == [
        ("stack", "peel", "visible"), ("stack", "old", "hidden"), ("layer", "original", "hidden")]
    assert [c.get("name") for c in top[0]] == ["cat", "background"] and top[0].get("isolation") == "isolate"
    assert ora_groups(path) == [("peel", "cat"), ("peel", "background"), ("old", "sketch"), ("", "original")]
    layers, _, _ = read_ora(path)
    assert [(la.name, la.visible) for la in layers] == [("cat", True), ("background", True), ("sketch", False),
                                                         ("original", False)]
    # the merged image is the visible group's: the hidden group and layer add nothing
    merged = np.asarray(Image.open(zipfile.ZipFile(path).open("mergedimage.png")), np.float32) / 255
    assert np.abs(merged - flatten([OraLayer("f", front), OraLayer("b", back)], 12, 10)).max() <= 0.5 / 255 + 1e-6


def test_load_image_and_mask(tmp_path):
    rgba = np.zeros((8, 9, 4), np.uint8)
    rgba[..., 3] = 128
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "a.png")
    Image.fromarray(np.full((8, 9), 255, np.uint8)).save(tmp_path / "m.png")
    assert load_image(tmp_path / "a.png").shape == (8, 9, 4)
    assert load_mask(tmp_path / "a.png")[1, 1] == pytest.approx(128 / 255)  # alpha of an RGBA mask
    assert load_mask(tmp_path / "m.png").max() == 1.0
    save_png(tmp_path / "o.png", np.zeros((8, 9, 3), np.float32))
    assert Image.open(tmp_path / "o.png").size == (9, 8)


def test_unreadable_files(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot read"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(InputError, match="no such file"):
        load_mask(tmp_path / "missing.png")


@pytest.mark.parametrize("dtype", ["u8", "u16", "f16", "f32"])
@pytest.mark.parametrize("order", ["RGBA", "BGRA", "RGB", "BGR"])
def test_wire_round_trip(dtype, order):
    rng = np.random.default_rng(1)
    arr = rng.uniform(0, 1, (5, 7, len(order))).astype(np.float32)
    image = from_array(arr, dtype, order)
    assert image.expected_nbytes == memoryview(image.data).nbytes
    back = to_array(image)
    tol = {"u8": 0.5 / 255, "u16": 0.5 / 65535, "f16": 1e-3, "f32": 0}[dtype] + 1e-7
    assert np.abs(back - arr).max() <= tol


def test_wire_bgra_byte_order():
    arr = np.zeros((1, 1, 4), np.float32)
    arr[0, 0] = [1.0, 0.0, 0.0, 1.0]  # opaque red
    assert bytes(from_array(arr, "u8", "BGRA").data) == bytes([0, 0, 255, 255])
    assert to_mask(from_array(arr, "u8", "BGRA"))[0, 0] == 1.0  # alpha of an RGBA mask
