"""KritaBridge against the mock `krita` module: reading layers/selections, building the layer tree."""

import pytest
from layering_protocol import Image, Result
from layeringdiff_krita.controller import Job, UserError


def setup_doc(mk, w=40, h=30, depth="U8", model="RGBA", layer_rect=(5, 4, 20, 10)):
    k = mk.Krita.instance()
    doc = k.createDocument(w, h, "t", model, depth, "", 72.0)
    k.active_doc = doc
    layer = doc.createNode("photo", "paintlayer")
    doc.rootNode().addChildNode(layer, None)
    x, y, lw, lh = layer_rect
    layer.setPixelData(bytes(lw * lh * mk.BYTES_PER_PIXEL[depth]), x, y, lw, lh)
    doc.setActiveNode(layer)
    return doc, layer


def result(w, h, depth_bytes=4):
    img = Image(w, h, "BGRA", "u8", bytes(w * h * depth_bytes))
    return Result("job", img, img, Image(w, h, "L", "u8", bytes(w * h)), {"recomposition_error": 0.0})


def test_reads_the_layer_at_its_offset_and_the_selection_under_it(fake_krita):
    from layeringdiff_krita.krita_bridge import KritaBridge

    doc, layer = setup_doc(fake_krita)
    sel = bytearray(40 * 30)
    sel[4 * 40 + 5] = 255  # the layer's top-left pixel
    doc.sel = fake_krita.Selection(bytes(sel), 40, 30)
    bridge = KritaBridge()
    px = bridge.read_active_layer(bridge.active_document())
    assert px.rect == (5, 4, 20, 10) and px.image.order == "BGRA" and px.image.dtype == "u8"
    mask = bridge.read_selection(doc, px)
    assert len(mask) == 200 and mask[0] == 255 and sum(mask) == 255


def test_layer_outside_the_canvas_is_clipped(fake_krita):
    from layeringdiff_krita.krita_bridge import KritaBridge

    setup_doc(fake_krita, layer_rect=(30, 20, 20, 20))
    px = KritaBridge().read_active_layer(fake_krita.Krita.instance().active_doc)
    assert px.rect == (30, 20, 10, 10)


@pytest.mark.parametrize("case,words", [("no doc", "Open or create"), ("no layer", "Choose a layer"),
                                        ("group", "grouplayer"), ("cmyk", "RGB layers"), ("empty", "empty")])
def test_read_errors(fake_krita, case, words):
    from layeringdiff_krita.krita_bridge import KritaBridge

    bridge = KritaBridge()
    if case == "no doc":
        with pytest.raises(UserError, match=words):
            bridge.active_document()
        return
    doc, layer = setup_doc(fake_krita, model="CMYKA" if case == "cmyk" else "RGBA")
    if case == "no layer":
        doc.setActiveNode(None)
    elif case == "group":
        doc.setActiveNode(doc.createGroupLayer("g"))
    elif case == "empty":
        layer.pixels = {}
    with pytest.raises(UserError, match=words):
        bridge.read_active_layer(doc)


def test_split_then_peel_builds_the_group(fake_krita):
    from layeringdiff_krita.krita_bridge import KritaBridge

    doc, layer = setup_doc(fake_krita)
    bridge = KritaBridge()
    px = bridge.read_active_layer(doc)
    bridge.apply_split(Job("1", "split", doc, px, "cat"), result(20, 10))
    root = doc.rootNode().childNodes()
    assert [n.name() for n in root] == ["photo", "cat"] and not layer.visible()
    group = root[1]
    assert [n.name() for n in group.childNodes()] == ["cat background", "cat foreground"]
    assert list(group.childNodes()[1].pixels) == [(5, 4, 20, 10)]  # at the source's offset
    assert doc.activeNode().name() == "cat background"
    # peel the background the split left active
    bg_px = bridge.read_active_layer(doc)
    assert bridge.peel_index(bg_px) == 2
    bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), result(20, 10))
    assert [(n.name(), n.visible()) for n in group.childNodes()] == [
        ("cat background", False), ("ball background", True), ("ball foreground 2", True), ("cat foreground", True)]


def test_refused_pixels_take_the_new_layers_out(fake_krita, monkeypatch):
    from layeringdiff_krita.krita_bridge import KritaBridge

    doc, layer = setup_doc(fake_krita)
    bridge = KritaBridge()
    px = bridge.read_active_layer(doc)
    monkeypatch.setattr(fake_krita.Node, "setPixelData", lambda self, *a: False)
    with pytest.raises(UserError, match="unchanged"):
        bridge.apply_split(Job("1", "split", doc, px, "cat"), result(20, 10))
    assert [n.name() for n in doc.rootNode().childNodes()] == ["photo"] and layer.visible()


def test_generate_creates_a_document_when_none_is_open(fake_krita):
    from layeringdiff_krita.krita_bridge import KritaBridge

    bridge = KritaBridge()
    doc = bridge.document_for_generate(64, 48)
    assert (doc.width(), doc.height()) == (64, 48)
    bridge.apply_generate(Job("1", "generate", doc, None, "fox", size=(64, 48)), result(64, 48))
    group = doc.rootNode().childNodes()[-1]
    assert group.name() == "fox" and [n.name() for n in group.childNodes()] == ["fox background", "fox foreground"]


def test_generate_with_several_phrases_stacks_the_foregrounds(fake_krita):
    from layeringdiff_krita.krita_bridge import KritaBridge

    bridge = KritaBridge()
    doc = bridge.document_for_generate(16, 8)
    res = result(16, 8)
    res.behind = [result(16, 8).foreground, result(16, 8).foreground]
    res.info["phrases"] = ["a cat", "a dog", "a ball"]
    bridge.apply_generate(Job("1", "generate", doc, None, "a cat", size=(16, 8)), res)
    group = doc.rootNode().childNodes()[-1]
    assert [n.name() for n in group.childNodes()] == [
        "a cat background", "a ball foreground", "a dog foreground", "a cat foreground"]


def test_a_guide_is_the_active_layer_over_the_generated_area(fake_krita, monkeypatch):
    from layeringdiff_krita.krita_bridge import KritaBridge

    doc, layer = setup_doc(fake_krita, layer_rect=(5, 4, 20, 10))
    calls = []
    real = type(layer).pixelData
    monkeypatch.setattr(type(layer), "pixelData", lambda self, *rect: calls.append(rect) or real(self, *rect))
    image = KritaBridge().read_guide(doc, 64, 48)
    assert calls == [(0, 0, 64, 48)] and (image.width, image.height, image.order, image.dtype) == (64, 48, "BGRA", "u8")
    assert len(image.data) == 64 * 48 * 4


@pytest.mark.parametrize("case,words", [("group", "paint layer"), ("empty", "nothing inside"),
                                        ("outside", "nothing inside"), ("grey", "RGB")])
def test_guide_errors(fake_krita, case, words):
    from layeringdiff_krita.krita_bridge import KritaBridge

    doc, layer = setup_doc(fake_krita, model="GRAYA" if case == "grey" else "RGBA",
                           layer_rect=(50, 40, 8, 8) if case == "outside" else (5, 4, 20, 10))
    if case == "group":
        doc.setActiveNode(doc.createGroupLayer("g"))
    if case == "empty":
        layer.pixels = {}
    with pytest.raises(UserError, match=words):
        KritaBridge().read_guide(doc, 32, 32)
