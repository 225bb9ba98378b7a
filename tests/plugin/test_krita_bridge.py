"""KritaBridge against the mock `krita` module: reading layers/selections, building the layer tree, and the
picture the canvas shows (the mock composes the visible layers) at every undo step."""

import numpy as np
import pytest
from layering_protocol import Image, Result
from layeringdiff_krita.jobs import Job, NoObjects, Objects, UserError


def painting(w, h, seed):
    """Opaque BGRA u8 pixels with distinct values everywhere (a swap or shift of layers changes the picture)."""
    bgra = np.random.default_rng(seed).integers(1, 255, (h, w, 4), dtype=np.uint8)
    bgra[..., 3] = 255
    return bgra


def setup_doc(mk, w=40, h=30, depth="U8", model="RGBA", layer_rect=(5, 4, 20, 10)):
    k = mk.Krita.instance()
    doc = k.createDocument(w, h, "t", model, depth, "", 72.0)
    k.active_doc = doc
    layer = doc.createNode("photo", "paintlayer")
    doc.rootNode().addChildNode(layer, None)
    x, y, lw, lh = layer_rect
    data = painting(lw, lh, 1).tobytes() if depth == "U8" else bytes(lw * lh * mk.BYTES_PER_PIXEL[depth])
    layer.setPixelData(data, x, y, lw, lh)
    doc.setActiveNode(layer)
    doc.history, doc.index = [], 0  # the document as opened: nothing to undo
    return doc, layer


def soft_disc(w, h):
    """An alpha with an opaque middle, a soft edge and a clear outside, as u8."""
    yy, xx = np.mgrid[0:h, 0:w]
    dist = np.hypot((xx - w / 2) / w, (yy - h / 2) / h) * min(w, h)
    return np.round(np.clip(min(w, h) / 3 - dist, 0, 1) * 255).astype(np.uint8)


HIDDEN = (255, 128, 0)  # BGR of what the background shows where the foreground hides it


def split_of(image):
    """An exact split of an opaque layer: F = the layer under a soft alpha; B = the layer where any of it shows
    and flat blue where the foreground hides it all, so aF + (1 - a)B recomposes the layer."""
    w, h = image.width, image.height
    c = np.frombuffer(image.data, np.uint8).reshape(h, w, 4)
    a = soft_disc(w, h)
    assert (a == 255).any() and ((a > 0) & (a < 255)).any() and (a == 0).any()
    fg = c.copy()
    fg[..., 3] = a
    bg = c.copy()
    bg[a == 255, :3] = HIDDEN
    return Result("job", Image(w, h, "BGRA", "u8", fg.tobytes()), Image(w, h, "BGRA", "u8", bg.tobytes()),
                  Image(w, h, "L", "u8", a.tobytes()), {"recomposition_error": 0.0})


def result(w, h, depth_bytes=4):
    img = Image(w, h, "BGRA", "u8", bytes(w * h * depth_bytes))
    return Result("job", img, img, Image(w, h, "L", "u8", bytes(w * h)), {"recomposition_error": 0.0})


def pixels_of(node, rect):
    x, y, w, h = rect
    return np.frombuffer(node.pixelData(x, y, w, h), np.uint8).reshape(h, w, 4)


def same_picture(a, b):
    return a.shape == b.shape and np.abs(a - b).max() <= 1e-9


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
                                        ("group", "is a group layer: choose a paint layer"),
                                        ("vector", "is a vector layer: .* Convert > to Paint Layer"),
                                        ("cmyk", "RGB layers"), ("empty", "empty")])
def test_read_errors(fake_krita, case, words):
    from layeringdiff_krita.krita_bridge import KritaBridge

    bridge = KritaBridge()
    if case == "no doc":
        with pytest.raises(UserError, match=words):
            bridge.active_document()
        return
    doc, layer = setup_doc(fake_krita, model="CMYKA" if case == "cmyk" else "RGBA")
    if case == "no layer":
        doc.active = None
    elif case == "group":
        doc.setActiveNode(doc.createGroupLayer("g"))
    elif case == "vector":
        doc.setActiveNode(doc.createNode("v", "vectorlayer"))
    elif case == "empty":
        layer.pixels = {}
    with pytest.raises(UserError, match=words):
        bridge.read_active_layer(doc)


def bridge_for(mk):
    from layeringdiff_krita.krita_bridge import KritaBridge

    return KritaBridge(ui=mk.FakeUi())


def shown(mk, doc):
    mk.Krita.instance().window.addView(doc)
    return doc


def ready(mk):
    """The document with its 'photo' layer, in the active view, and a bridge to it."""
    doc, layer = setup_doc(mk)
    shown(mk, doc)
    return doc, layer, bridge_for(mk)


def tree(node):
    return [(n.name(), n.visible()) for n in node.childNodes()]


def whole_tree(node):
    return [(n.name(), n.visible(), whole_tree(n)) for n in node.childNodes()]


def test_split_then_peel_keep_the_picture_at_every_undo_step(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    px = bridge.read_active_layer(doc)
    picture = doc.projection()
    assert picture[4:14, 5:25, 3].min() == 1 and picture[..., 3].sum() == 200  # the layer, and only it
    res = split_of(px.image)
    text = bridge.apply_split(Job("1", "split", doc, px, "cat"), res)
    assert text.startswith("Split 'photo' into group 'cat' (1 cat, background 1)")
    assert tree(doc.rootNode()) == [("photo", False), ("cat", True)]
    group = doc.rootNode().childNodes()[1]
    assert tree(group) == [("background 1", True), ("1 cat", True)]
    fg, bg = group.childNodes()[1], group.childNodes()[0]
    assert list(fg.pixels) == [(5, 4, 20, 10)]  # at the source's offset
    assert pixels_of(fg, px.rect).tobytes() == res.foreground.data
    assert pixels_of(bg, px.rect).tobytes() == res.background.data
    assert same_picture(doc.projection(), picture)  # the hidden part of the background stays hidden
    assert doc.activeNode().name() == "background 1"
    assert [t for t, _, _ in doc.history] == ["Add Layer", "Property Changes"]  # one step per change of the picture
    states = [(tree(doc.rootNode()), tree(group))]
    doc.undo()  # the source shows again under the group: the same picture
    states.append((tree(doc.rootNode()), tree(group)))
    assert states[-1][0] == [("photo", True), ("cat", True)] and same_picture(doc.projection(), picture)
    doc.undo()
    assert tree(doc.rootNode()) == [("photo", True)] and same_picture(doc.projection(), picture)
    for expected in reversed(states):
        doc.redo()
        assert (tree(doc.rootNode()), tree(group)) == expected and same_picture(doc.projection(), picture)
    # peel the background the split left active: one group, numbered front to back, flat
    bg_px = bridge.read_active_layer(doc)
    assert bg_px.image.data == res.background.data and bridge.peel_index(bg_px) == 2
    peel = split_of(bg_px.image)
    text = bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), peel)
    peeled = [("background 1", False), ("background 2", True), ("2 ball", True), ("1 cat", True)]
    assert tree(group) == peeled
    assert pixels_of(group.childNodes()[2], px.rect).tobytes() == peel.foreground.data
    assert pixels_of(group.childNodes()[1], px.rect).tobytes() == peel.background.data
    assert [t for t, _, _ in doc.history][2:] == ["Add Layer", "Property Changes", "Quick Ungroup"]
    assert doc.activeNode().name() == "background 2" and "in group" not in text
    assert same_picture(doc.projection(), picture)
    # every step of the peel taken back and redone shows the same picture
    steps = [tree(group)]
    for _ in range(3):
        doc.undo()
        steps.append(tree(group))
        assert same_picture(doc.projection(), picture)
    assert steps[1][-2:] == [("peel 2", True), ("1 cat", True)]  # the ungroup undone: the peel's own group is back
    assert steps[2] == [("background 1", True), ("peel 2", True), ("1 cat", True)]
    assert steps[3] == [("background 1", True), ("1 cat", True)]
    for expected in reversed(steps[:-1]):
        doc.redo()
        assert tree(group) == expected and same_picture(doc.projection(), picture)


def test_undo_split_takes_back_exactly_the_last_operation(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    picture = doc.projection()
    px = bridge.read_active_layer(doc)
    bridge.apply_split(Job("1", "split", doc, px, "cat"), split_of(px.image))
    assert "Took back the split of 'photo'" in bridge.undo_last()
    assert tree(doc.rootNode()) == [("photo", True)] and doc.activeNode() == layer
    assert same_picture(doc.projection(), picture) and pixels_of(layer, px.rect).tobytes() == px.image.data
    with pytest.raises(UserError, match="Nothing to take back"):
        bridge.undo_last()


def test_undo_split_takes_a_deselect_after_it_back_too(fake_krita):
    # the artist drops the selection once the split is in (Ctrl+Shift+A): it changed no layer, so Undo split still
    # works, and takes it back with the split (the selection comes back, as before the split); a stroke still stops it
    doc, layer, bridge = ready(fake_krita)
    doc.sel = fake_krita.Selection(b"\x80" * (40 * 30), 40, 30)
    selection, picture = doc.sel, doc.projection()
    px = bridge.read_active_layer(doc)
    bridge.apply_split(Job("1", "split", doc, px, "cat"), split_of(px.image))
    actions = fake_krita.Krita.instance().action
    actions("deselect").trigger()
    actions("select_all").trigger()
    actions("deselect").trigger()
    assert doc.sel is None and [t for t, _, _ in doc.history][-3:] == ["Deselect", "Select All", "Deselect"]
    said = bridge.undo_last()
    assert said == ("Took back the split of 'photo' and the Deselect, Select All after it: the document is as it was "
                    "before."), said
    assert doc.index == 0 and doc.sel is selection
    assert tree(doc.rootNode()) == [("photo", True)] and same_picture(doc.projection(), picture)
    px = bridge.read_active_layer(doc)
    bridge.apply_split(Job("2", "split", doc, px, "cat"), split_of(px.image))
    actions("deselect").trigger()
    doc.record("Stroke", lambda: None, lambda: None)
    with pytest.raises(UserError, match="changed after the split \\('Stroke'\\)"):
        bridge.undo_last()


@pytest.mark.parametrize("kind", ["split", "peel"])
def test_undo_split_works_when_the_undo_history_is_full(fake_krita, kind):
    """Krita keeps a limited undo history: once full, each new step drops the oldest and the index stands still."""
    doc, layer, bridge = ready(fake_krita)
    if kind == "peel":
        px = bridge.read_active_layer(doc)
        bridge.apply_split(Job("1", "split", doc, px, "cat"), split_of(px.image))
    for i in range(fake_krita.UNDO_LIMIT):  # strokes fill the history
        doc.record(f"Stroke {i}", lambda: None, lambda: None)
    before_tree, before_picture = whole_tree(doc.rootNode()), doc.projection()
    px = bridge.read_active_layer(doc)
    if kind == "peel":
        bridge.apply_peel(Job("2", "peel", doc, px, "ball", index=2), split_of(px.image))
    else:
        bridge.apply_split(Job("2", "split", doc, px, "cat"), split_of(px.image))
    assert len(doc.history) == fake_krita.UNDO_LIMIT and doc.index == fake_krita.UNDO_LIMIT
    assert whole_tree(doc.rootNode()) != before_tree and same_picture(doc.projection(), before_picture)
    assert "Took back" in bridge.undo_last()
    assert whole_tree(doc.rootNode()) == before_tree and same_picture(doc.projection(), before_picture)
    assert doc.index == fake_krita.UNDO_LIMIT - (3 if kind == "peel" else 2)


@pytest.mark.parametrize("change,words", [
    (lambda doc, mk: doc.rootNode().childNodes()[0].remove(), "changed after the split"),
    (lambda doc, mk: mk.Krita.instance().action("edit_undo").trigger(), "already taken back"),
    (lambda doc, mk: doc.rootNode().childNodes()[1].setName("renamed"), "without an undo entry"),
    (lambda doc, mk: mk.Krita.instance().window.addView(mk.Krita.instance().createDocument(8, 8, "other", "RGBA",
                                                                                            "U8", "", 72.0)),
     "Switch to the document 't'"),
])
def test_undo_split_refuses_when_the_document_changed_since(fake_krita, change, words):
    doc, layer, bridge = ready(fake_krita)
    bridge.apply_split(Job("1", "split", doc, bridge.read_active_layer(doc), "cat"), result(20, 10))
    change(doc, fake_krita)
    with pytest.raises(UserError, match=words):
        bridge.undo_last()


def backdrop(doc, mk):
    """A painted layer under the source, so the source's blend mode, opacity and masks change the picture."""
    under = doc.createNode("paper", "paintlayer")
    under.setPixelData(painting(doc.width(), doc.height(), 7).tobytes(), 0, 0, doc.width(), doc.height())
    doc.rootNode()._attach(under, 0)
    return under


def test_the_group_takes_the_sources_look_and_the_layers_inside_stay_plain(fake_krita):
    doc, layer = setup_doc(fake_krita)
    shown(fake_krita, doc)
    backdrop(doc, fake_krita)
    plain = doc.projection()
    layer._opacity, layer._mode, layer._inherit, layer._label, layer._style = 128, "multiply", True, 3, "<asl/>"
    fade = doc.createNode("fade", "transparencymask")
    fade.setPixelData(np.linspace(0, 255, 40 * 30).astype(np.uint8).tobytes(), 0, 0, 40, 30)
    layer._attach(fade, 0)
    layer._attach(doc.createNode("local", "selectionmask"), 1)
    picture = doc.projection()
    assert not same_picture(picture, plain)  # the look changes the picture, so keeping it is checked below
    bridge = bridge_for(fake_krita)
    px = bridge.read_active_layer(doc)
    bridge.apply_split(Job("1", "split", doc, px, ""), split_of(px.image))
    assert same_picture(doc.projection(), picture)
    group = doc.rootNode().childNodes()[2]
    assert group.name() == "photo split"
    assert (group.opacity(), group.blendingMode(), group.inheritAlpha(), group.colorLabel(),
            group.layerStyleToAsl()) == (128, "multiply", True, 3, "<asl/>")
    assert [(n.name(), n.type()) for n in group.childNodes()] == [
        ("background 1", "paintlayer"), ("1 foreground", "paintlayer"), ("fade", "transparencymask")]
    assert all((n.opacity(), n.blendingMode()) == (255, "normal") for n in group.childNodes()[:2])
    # the blend mode was set in the scratch document: the document's history has the two steps only
    assert [t for t, _, _ in doc.history] == ["Add Layer", "Property Changes"]


def test_a_hidden_source_gives_a_hidden_group_in_one_step(fake_krita):
    doc, layer = setup_doc(fake_krita)
    shown(fake_krita, doc)
    layer.setVisible(False)
    bridge = bridge_for(fake_krita)
    px = bridge.read_active_layer(doc)
    text = bridge.apply_split(Job("1", "split", doc, px, "cat"), split_of(px.image))
    assert tree(doc.rootNode()) == [("photo", False), ("cat", False)] and "hidden too" in text
    assert doc.projection().max() == 0  # nothing shows, as before
    assert [t for t, _, _ in doc.history] == ["Add Layer"]


def test_a_source_with_a_colorize_mask_is_refused(fake_krita):
    doc, layer = setup_doc(fake_krita)
    layer._attach(doc.createNode("colours", "colorizemask"), 0)
    with pytest.raises(UserError, match="colorize mask"):
        bridge_for(fake_krita).read_active_layer(doc)


def test_peel_of_a_background_with_a_look_of_its_own_keeps_it_on_a_group(fake_krita):
    doc, layer = setup_doc(fake_krita)
    shown(fake_krita, doc)
    backdrop(doc, fake_krita)
    bridge = bridge_for(fake_krita)
    px = bridge.read_active_layer(doc)
    bridge.apply_split(Job("1", "split", doc, px, "cat"), split_of(px.image))
    background = doc.activeNode()
    background.setOpacity(100)
    picture = doc.projection()
    bg_px = bridge.read_active_layer(doc)
    text = bridge.apply_peel(Job("2", "peel", doc, bg_px, "", index=2), split_of(bg_px.image))
    assert same_picture(doc.projection(), picture)
    group = doc.rootNode().childNodes()[2]
    peel = group.childNodes()[1]
    assert (peel.name(), peel.opacity()) == ("peel 2", 100) and "in group 'peel 2'" in text
    assert tree(peel) == [("background 2", True), ("2 foreground", True)]


def test_peel_is_offered_only_on_a_background_a_split_left(fake_krita):
    doc, layer = setup_doc(fake_krita)
    bridge = bridge_for(fake_krita)
    assert bridge.peel_index(bridge.read_active_layer(doc)) is None


def test_splitting_a_background_names_a_new_group_without_repeating_words(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    bridge.apply_split(Job("1", "split", doc, bridge.read_active_layer(doc), ""), result(20, 10))
    bg_px = bridge.read_active_layer(doc)
    bridge.apply_split(Job("2", "split", doc, bg_px, ""), result(20, 10))
    names = [n.name() for n in doc.rootNode().childNodes()[1].childNodes()]
    assert names == ["background 1", "background 1 split", "1 foreground"]
    assert not any("background background" in n for n in bridge._all_names(doc))


def test_the_group_name_is_never_one_the_document_has(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    for i in range(2):
        doc.setActiveNode(layer)
        layer.setVisible(True)
        bridge.apply_split(Job(str(i), "split", doc, bridge.read_active_layer(doc), "cat"), result(20, 10))
    assert sorted(n.name() for n in doc.rootNode().childNodes() if n.type() == "grouplayer") == ["cat", "cat 2"]


def test_refused_pixels_leave_the_document_unchanged(fake_krita, monkeypatch):
    doc, layer, bridge = ready(fake_krita)
    px = bridge.read_active_layer(doc)
    monkeypatch.setattr(fake_krita.Node, "setPixelData", lambda self, *a: False)
    with pytest.raises(UserError, match="unchanged"):
        bridge.apply_split(Job("1", "split", doc, px, "cat"), result(20, 10))
    assert [n.name() for n in doc.rootNode().childNodes()] == ["photo"] and layer.visible() and not doc.history
    assert fake_krita.Krita.instance().documents() == [doc]  # the scratch document is closed


def test_a_source_deleted_during_the_job_is_reported(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    px = bridge.read_active_layer(doc)
    layer.remove()
    with pytest.raises(UserError, match="was deleted"):
        bridge.apply_split(Job("1", "split", doc, px, "cat"), result(20, 10))


def test_generate_makes_its_document_only_with_the_result(fake_krita):
    bridge = bridge_for(fake_krita)
    assert bridge.current_document() is None and bridge.document_format(None) == ("u8", "BGRA")
    job = Job("1", "generate", None, None, "fox", size=(64, 48))
    fox, ground = (Image(64, 48, "BGRA", "u8", painting(64, 48, seed).tobytes()) for seed in (1, 2))
    text = bridge.apply_generate(job, Result("job", fox, ground, Image(64, 48, "L", "u8", bytes(64 * 48))))
    doc = job.doc
    assert (doc.width(), doc.height()) == (64, 48) and "new 64x48 document" in text
    group = doc.rootNode().childNodes()[-1]
    assert [n.name() for n in doc.rootNode().childNodes()] == ["fox"]  # no blank background beneath
    assert [n.name() for n in group.childNodes()] == ["background 1", "1 fox"] and not doc.history
    assert same_picture(doc.projection()[..., [2, 1, 0]] * 255, painting(64, 48, 1)[..., :3].astype(float))


def test_generate_with_several_phrases_numbers_them_front_to_back(fake_krita):
    doc, layer = setup_doc(fake_krita, 16, 8, layer_rect=(0, 0, 16, 8))
    shown(fake_krita, doc)
    bridge = bridge_for(fake_krita)
    images = [Image(16, 8, "BGRA", "u8", painting(16, 8, seed).tobytes()) for seed in range(4)]
    res = Result("job", images[0], images[3], Image(16, 8, "L", "u8", bytes(128)), {}, behind=images[1:3])
    res.info["phrases"] = ["a cat", "a dog", "a ball"]
    bridge.apply_generate(Job("1", "generate", doc, None, "a cat", size=(16, 8)), res)
    group = doc.rootNode().childNodes()[-1]
    assert [n.name() for n in group.childNodes()] == ["background 3", "3 a ball", "2 a dog", "1 a cat"]
    assert [pixels_of(n, (0, 0, 16, 8)).tobytes() for n in group.childNodes()] == [
        images[3].data, images[2].data, images[1].data, images[0].data]
    assert [t for t, _, _ in doc.history] == ["Add Layer"]


def test_a_guide_is_the_active_layer_over_the_generated_area(fake_krita, monkeypatch):
    from layeringdiff_krita.krita_bridge import KritaBridge

    doc, layer = setup_doc(fake_krita, layer_rect=(5, 4, 20, 10))
    calls = []
    real = type(layer).pixelData
    monkeypatch.setattr(type(layer), "pixelData", lambda self, *rect: calls.append(rect) or real(self, *rect))
    image = KritaBridge().read_guide(doc, 64, 48)
    assert calls == [(0, 0, 64, 48)] and (image.width, image.height, image.order, image.dtype) == (64, 48, "BGRA", "u8")
    assert len(image.data) == 64 * 48 * 4


GUIDE_OUTSIDE = ("The guide layer 'photo' has nothing inside the 32x32 area that will be generated (from the "
                 "canvas's top-left corner).")


@pytest.mark.parametrize("case,rect,message", [
    ("group", (5, 4, 20, 10), "Choose the guide in the Layers docker: a paint layer with a sketch or a depth map."),
    ("empty", (5, 4, 20, 10), GUIDE_OUTSIDE),
    ("right of it", (32, 4, 8, 8), GUIDE_OUTSIDE),  # the first column past the area
    ("below it", (4, 32, 8, 8), GUIDE_OUTSIDE),
    ("grey", (5, 4, 20, 10), "LayeringDiff works on RGB layers; this layer is GRAYA/U8. Convert it with Image > "
                             "Convert Image Color Space (or Layer > Convert > Layer Color Space) to RGB."),
])
def test_guide_errors(fake_krita, case, rect, message):
    from layeringdiff_krita.krita_bridge import KritaBridge

    doc, layer = setup_doc(fake_krita, model="GRAYA" if case == "grey" else "RGBA", layer_rect=rect)
    if case == "group":
        doc.setActiveNode(doc.createGroupLayer("g"))
    if case == "empty":
        layer.pixels = {}
    with pytest.raises(UserError) as caught:
        KritaBridge().read_guide(doc, 32, 32)
    assert str(caught.value) == message


@pytest.mark.parametrize("rect", [(31, 0, 1, 1), (0, 31, 1, 1), (31, 31, 1, 1)])
def test_a_guide_of_one_pixel_at_the_areas_edge_is_read(fake_krita, rect):
    from layeringdiff_krita.krita_bridge import KritaBridge

    doc, layer = setup_doc(fake_krita, layer_rect=rect)
    image = KritaBridge().read_guide(doc, 32, 32)
    x, y = rect[:2]
    assert image.data[(y * 32 + x) * 4:(y * 32 + x + 1) * 4] == painting(1, 1, 1).tobytes()


@pytest.mark.parametrize("look,grouped", [
    (lambda n, d: n.setOpacity(254), True), (lambda n, d: n.setBlendingMode("multiply"), True),
    (lambda n, d: n.setInheritAlpha(True), True), (lambda n, d: n.setLayerStyleFromAsl("<asl/>"), True),
    (lambda n, d: n._attach(d.createNode("fade", "transparencymask"), 0), True),
    (lambda n, d: n._attach(d.createNode("local", "selectionmask"), 0), False),  # a selection changes no pixel
    (lambda n, d: n.setColorLabel(2), False),
])
def test_a_peel_keeps_a_group_only_for_a_look_the_layers_inside_cannot_carry(fake_krita, look, grouped):
    doc, layer, bridge = ready(fake_krita)
    split_photo(fake_krita, bridge, doc)
    look(doc.activeNode(), doc)
    bg_px = bridge.read_active_layer(doc)
    text = bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), split_of(bg_px.image))
    names = [n.name() for n in doc.rootNode().childNodes()[1].childNodes()]
    assert ("peel 2" in names) == grouped and ("in group 'peel 2'" in text) == grouped


def test_peel_is_offered_only_inside_a_split_group_with_numbered_foregrounds(fake_krita):
    doc, layer = setup_doc(fake_krita)
    bridge = bridge_for(fake_krita)
    layer.setName("background 1")
    doc.rootNode()._attach(doc.createNode("1 cat", "paintlayer"), 1)  # the same names, but not in a group
    assert bridge.peel_index(bridge.read_active_layer(doc)) is None
    group = doc.createGroupLayer("notes")
    doc.rootNode()._attach(group, 0)
    doc.rootNode()._detach(layer)
    group._attach(layer, 0)
    group._attach(doc.createNode("sketch", "paintlayer"), 1)  # a group, but no numbered foreground in it
    assert bridge.peel_index(bridge.read_active_layer(doc)) is None
    group._attach(doc.createNode("3 cat", "paintlayer"), 2)
    assert bridge.peel_index(bridge.read_active_layer(doc)) == 4


def test_documents_are_named_and_read_in_their_format(fake_krita):
    from layeringdiff_krita.krita_bridge import KritaBridge

    bridge = KritaBridge()
    doc, _ = setup_doc(fake_krita, depth="U16")
    assert bridge.document_format(doc) == ("u16", "BGRA")
    assert bridge.document_name(doc) == "t"
    doc._name = ""
    assert bridge.document_name(doc) == "untitled"
    doc.fileName = lambda: "/home/artist/cat.kra"
    assert bridge.document_name(doc) == "cat.kra"
    cmyk, _ = setup_doc(fake_krita, model="CMYKA")
    with pytest.raises(UserError) as caught:
        bridge.document_format(cmyk)
    assert str(caught.value) == ("LayeringDiff works on RGB layers; this layer is CMYKA/U8. Convert it with Image > "
                                 "Convert Image Color Space (or Layer > Convert > Layer Color Space) to RGB.")


@pytest.mark.parametrize("depth,profile", [("U16", None), ("U8", "WideRGB-elle-V2-g22.icc")])
def test_new_layers_keep_the_colour_space_of_a_layer_unlike_its_document(fake_krita, depth, profile):
    # a 16-bit layer in an 8-bit document; a wide-gamut one in an sRGB document, whose numbers under the document's
    # profile showed other colours (up to 62/255)
    doc, layer = setup_doc(fake_krita)
    shown(fake_krita, doc)
    profile = profile or doc.colorProfile()  # None: the document's
    layer.setColorSpace("RGBA", depth, profile)
    size = 8 if depth == "U16" else 4
    layer.pixels = {(5, 4, 20, 10): bytes(20 * 10 * size)}
    bridge = bridge_for(fake_krita)
    px = bridge.read_active_layer(doc)
    dtype = "u16" if depth == "U16" else "u8"
    assert (px.image.dtype, px.image.order) == (dtype, "BGRA")
    image = Image(20, 10, "BGRA", dtype, (bytes(range(200)) * size)[:200 * size])
    alpha = Image(20, 10, "L", "u8", bytes(200))
    said = bridge.apply_split(Job("1", "split", doc, px, "cat"), Result("j", image, image, alpha))
    group = doc.rootNode().childNodes()[1]
    assert [(n.colorDepth(), n.colorProfile()) for n in group.childNodes()] == [(depth, profile)] * 2
    bg_px = bridge.read_active_layer(doc)
    assert bg_px.image.data == image.data
    said_too = bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), Result("j", image, image, alpha))
    assert [(n.colorDepth(), n.colorProfile()) for n in group.childNodes()] == [(depth, profile)] * 4
    # Krita mixes them in the document's profile: the soft edges are not quite the layer's own mix, and it says so
    note = (f"; it has its own colour profile ({profile}), which the new layers keep, but Krita mixes them in the "
            f"document's ({doc.colorProfile()}), so their soft edges may look slightly different: for an exact "
            "split, convert the layer to the document's profile first (Layer > Convert)")
    assert [note in said, note in said_too] == [profile != doc.colorProfile()] * 2, said


def test_a_generated_document_is_shown_ready_to_peel_and_closing_it_is_its_undo(fake_krita):
    bridge = bridge_for(fake_krita)
    k = fake_krita.Krita.instance()
    job = Job("1", "generate", None, None, "", size=(16, 8))
    image = Image(16, 8, "BGRA", "u8", painting(16, 8, 2).tobytes())
    text = bridge.apply_generate(job, Result("job", image, image, Image(16, 8, "L", "u8", bytes(128))))
    doc = job.doc
    assert text == "Generated a new 16x8 document with group 'generated' (background 1, 1 generated)"
    assert (doc.name(), doc.colorModel(), doc.colorDepth()) == ("LayeringDiff", "RGBA", "U8")
    assert k.window.view.doc is doc and doc.activeNode().name() == "background 1"
    with pytest.raises(UserError, match="^Nothing to take back"):
        bridge.undo_last()


def test_peel_of_a_hidden_background_adds_hidden_layers_with_its_label(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    px = bridge.read_active_layer(doc)
    bridge.apply_split(Job("1", "split", doc, px, "cat"), split_of(px.image))
    background = doc.activeNode()
    background.setVisible(False)
    background.setColorLabel(5)
    picture = doc.projection()
    bg_px = bridge.read_active_layer(doc)
    bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), split_of(bg_px.image))
    assert same_picture(doc.projection(), picture)
    group = doc.rootNode().childNodes()[1]
    assert [(n.name(), n.visible(), n.colorLabel()) for n in group.childNodes()] == [
        ("background 1", False, 5), ("background 2", False, 5), ("2 ball", False, 5), ("1 cat", True, 0)]
    assert [t for t, _, _ in doc.history][2:] == ["Add Layer", "Quick Ungroup"]  # nothing to hide: one step less


def split_photo(mk, bridge, doc):
    px = bridge.read_active_layer(doc)
    return px, bridge.apply_split(Job("1", "split", doc, px, "cat"), split_of(px.image))


@pytest.mark.parametrize("case,message", [
    ("nothing", "Nothing to take back: no split, peel or generate since Krita started (or it was already taken "
                "back)."),
    ("closed", "The document of the last split was closed."),
    ("elsewhere", "Switch to the document 't' first: the split was made there."),
    ("no history", "Cannot read Krita's undo history (the History docker), so the split cannot be taken back "
                   "safely here: use Edit > Undo."),
    ("stroke", "The document changed after the split ('Stroke'), so Undo split would take that back too: use "
               "Edit > Undo or the History docker, step by step."),
    ("unnamed", "The document changed after the split, so Undo split would take that back too: use Edit > Undo "
                "or the History docker, step by step."),  # Krita 6 leaves some entries unnamed: before, ('')
    ("one undo", "The split was already taken back with Edit > Undo (1 of 2 steps): press Ctrl+Z to finish, or "
                 "Ctrl+Shift+Z."),
    ("one undo of one", "The split was already taken back with Edit > Undo, all of it: nothing is left to take "
                        "back (Ctrl+Shift+Z brings it back)."),  # before: told to press Ctrl+Z, the edit before it
    ("two undos", "The split was already taken back with Edit > Undo, all of it: nothing is left to take back "
                  "(Ctrl+Shift+Z brings it back)."),
    ("renamed", "Layers changed after the split without an undo entry yet (Krita 6 records a rename a moment "
                "later; or a script), so it cannot be taken back exactly: try again in a moment, or use Edit > "
                "Undo."),
    ("undo ignored", "Krita ignored Undo with 2 of the split's 2 steps left (the image stayed busy): press Ctrl+Z "
                     "to finish, or Ctrl+Shift+Z."),
    ("undo ignored after one", "Krita ignored Undo with 1 of the split's 2 steps left (the image stayed busy): press "
                               "Ctrl+Z to finish, or Ctrl+Shift+Z."),
    ("undo ignored of one", "Krita ignored Undo with 1 of the split's 1 step left (the image stayed busy): press "
                            "Ctrl+Z to finish, or Ctrl+Shift+Z."),
    ("undo went too far", "Krita's undo history did not go back as expected: check the split in the History docker."),
])
def test_undo_split_says_exactly_why_it_cannot(fake_krita, monkeypatch, case, message):
    """The whole message the artist reads, for each reason (the words matter: they say what to do instead)."""
    doc, layer, bridge = ready(fake_krita)
    if case in ("one undo of one", "undo ignored of one"):
        layer.setVisible(False)  # nothing to hide: the split is one step
    if case == "undo went too far":  # an earlier entry that one undo too many takes back as well
        doc.record("Fill", lambda: None, lambda: None)
    if case != "nothing":
        split_photo(fake_krita, bridge, doc)
    k = fake_krita.Krita.instance()
    picture, history = doc.projection(), (list(doc.history), doc.index)
    if case == "closed":
        doc.close()
    elif case == "elsewhere":
        k.window.addView(k.createDocument(8, 8, "other", "RGBA", "U8", "", 72.0))
    elif case == "no history":
        monkeypatch.setattr(bridge.ui, "history", lambda: None)
    elif case in ("stroke", "unnamed"):
        doc.record("Stroke" if case == "stroke" else " ", lambda: None, lambda: None)
        picture, history = doc.projection(), (list(doc.history), doc.index)
    elif case.startswith("one undo") or case == "two undos":
        for _ in range(2 if case == "two undos" else 1):
            doc.undo()
        picture, history = doc.projection(), (list(doc.history), doc.index)
    elif case == "renamed":
        doc.rootNode().childNodes()[1].setName("renamed")
    elif case in ("undo ignored", "undo ignored of one"):
        monkeypatch.setattr(type(doc), "undo", lambda self: None)
    elif case == "undo ignored after one":
        real = type(doc).undo
        monkeypatch.setattr(type(doc), "undo", lambda self: real(self) if self.index == 2 else None)
    elif case == "undo went too far":
        real = type(doc).undo
        monkeypatch.setattr(type(doc), "undo", lambda self: (real(self), real(self)) if self.index == 2 else real(self))
    with pytest.raises(UserError) as caught:
        bridge.undo_last()
    assert str(caught.value) == message
    if case == "closed":  # forgotten: the next press says there is nothing left to take back
        with pytest.raises(UserError, match="^Nothing to take back"):
            bridge.undo_last()
    if case == "undo ignored after one":  # the next press says what is left, and Ctrl+Z finishes the job
        with pytest.raises(UserError, match=r"already taken back with Edit > Undo \(1 of 2 steps\)"):
            bridge.undo_last()
    if case not in ("closed",) and not case.startswith("undo "):  # a refusal changes nothing
        assert same_picture(doc.projection(), picture) and (list(doc.history), doc.index) == history
    if case == "two undos":  # still known: brought back with Ctrl+Shift+Z, Undo split takes it back
        doc.redo()
        doc.redo()
        assert bridge.undo_last().startswith("Took back the split of 'photo'")


def test_undo_split_presses_again_an_undo_krita_dropped_while_busy(fake_krita, monkeypatch):
    """Krita drops Edit > Undo while a stroke holds the image (its idle routines start one after two quiet
    seconds): the docker's Undo presses a dropped step again, and takes back exactly the split, no more."""
    doc, layer, bridge = ready(fake_krita)
    picture = doc.projection()
    split_photo(fake_krita, bridge, doc)
    real, presses = type(doc).undo, []

    def busy_every_other_press(self):
        presses.append(self.index)
        if len(presses) % 2:
            real(self)

    monkeypatch.setattr(type(doc), "undo", busy_every_other_press)
    assert bridge.undo_last() == "Took back the split of 'photo': the document is as it was before."
    assert presses == [2, 1, 1]  # the second step's first press was dropped and pressed again
    assert doc.index == 0 and same_picture(doc.projection(), picture) and tree(doc.rootNode()) == [("photo", True)]


def test_a_source_krita_would_not_hide_with_undo_is_shown_again_by_undo_split(fake_krita, monkeypatch):
    from layeringdiff_krita.krita_bridge import KritaBridge

    doc, layer, bridge = ready(fake_krita)
    picture = doc.projection()
    monkeypatch.setattr(KritaBridge, "_select_only", lambda self, *a: False)  # e.g. several layers stay selected
    _, text = split_photo(fake_krita, bridge, doc)
    assert text == ("Split 'photo' into group 'cat' (1 cat, background 1); 'photo' is hidden, not changed. Krita "
                    "would not hide it with an undo entry (several layers selected?): Undo split in this docker "
                    "shows it again")
    assert not layer.visible() and [t for t, _, _ in doc.history] == ["Add Layer"]
    assert same_picture(doc.projection(), picture)
    assert bridge.undo_last() == "Took back the split of 'photo': the document is as it was before."
    assert layer.visible() and tree(doc.rootNode()) == [("photo", True)] and same_picture(doc.projection(), picture)


def test_undo_peel_and_undo_generate_give_back_the_picture_and_the_active_layer(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    split_photo(fake_krita, bridge, doc)
    background, picture, before = doc.activeNode(), doc.projection(), whole_tree(doc.rootNode())
    bg_px = bridge.read_active_layer(doc)
    text = bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), split_of(bg_px.image))
    assert text == "Peeled '2 ball' and 'background 2' from 'background 1'; 'background 1' is hidden, not changed"
    assert bridge.undo_last() == "Took back the peel of 'background 1': the document is as it was before."
    assert whole_tree(doc.rootNode()) == before and doc.activeNode() == background
    assert same_picture(doc.projection(), picture)
    images = [Image(40, 30, "BGRA", "u8", painting(40, 30, seed).tobytes()) for seed in (3, 4, 5)]
    res = Result("job", images[0], images[2], Image(40, 30, "L", "u8", bytes(1200)), {"phrases": ["fox"]},
                 behind=images[1:2])
    text = bridge.apply_generate(Job("3", "generate", doc, None, "fox", size=(40, 30)), res)
    assert text == "Generated group 'fox' (1 fox, 2 object, background 2)"
    group = doc.rootNode().childNodes()[-1]
    assert tree(group) == [("background 2", True), ("2 object", True), ("1 fox", True)]
    assert doc.activeNode() == group.childNodes()[0]
    assert bridge.undo_last() == "Took back the generated group 'fox': the document is as it was before."
    assert whole_tree(doc.rootNode()) == before and doc.activeNode() == background
    assert same_picture(doc.projection(), picture)


def test_generated_groups_never_repeat_a_name_and_without_a_phrase_say_generated(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    image = Image(40, 30, "BGRA", "u8", painting(40, 30, 3).tobytes())
    for job in (Job("1", "generate", doc, None, "", size=(40, 30)), Job("2", "generate", doc, None, "", size=(40, 30))):
        bridge.apply_generate(job, Result("job", image, image, Image(40, 30, "L", "u8", bytes(1200))))
    assert [n.name() for n in doc.rootNode().childNodes()] == ["photo", "generated", "generated 2"]
    assert tree(doc.rootNode().childNodes()[2]) == [("background 1", True), ("1 generated", True)]


def test_a_peel_that_keeps_its_own_group_says_so_and_takes_back_in_two_steps(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    split_photo(fake_krita, bridge, doc)
    doc.activeNode().setOpacity(100)
    bg_px = bridge.read_active_layer(doc)
    history = len(doc.history)
    text = bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), split_of(bg_px.image))
    assert text == ("Peeled '2 ball' and 'background 2' from 'background 1' (in group 'peel 2', which keeps the look "
                    "of 'background 1'); 'background 1' is hidden, not changed")
    assert [t for t, _, _ in doc.history][history:] == ["Add Layer", "Property Changes"]  # no ungroup
    peel = doc.rootNode().childNodes()[1].childNodes()[1]
    assert doc.activeNode() == peel.childNodes()[0] and doc.activeNode().name() == "background 2"
    bridge.undo_last()
    assert len(doc.history) == history + 2 and doc.index == history


def test_a_peel_krita_would_not_hide_names_undo_peel(fake_krita, monkeypatch):
    from layeringdiff_krita.krita_bridge import KritaBridge

    doc, layer, bridge = ready(fake_krita)
    split_photo(fake_krita, bridge, doc)
    background = doc.activeNode()
    monkeypatch.setattr(KritaBridge, "_select_only", lambda self, *a: False)
    bg_px = bridge.read_active_layer(doc)
    text = bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), split_of(bg_px.image))
    assert text.endswith("not changed. Krita would not hide it with an undo entry (several layers selected?): Undo "
                         "peel in this docker shows it again")
    assert "peel 2" in [n.name() for n in doc.rootNode().childNodes()[1].childNodes()]  # no ungroup either
    bridge.undo_last()
    assert background.visible()


def test_a_peel_left_grouped_by_krita_does_not_claim_a_look_it_keeps(fake_krita, monkeypatch):
    """Inside a locked group Quick Ungroup does nothing: the peel stays a group, and says so, not that it keeps a
    look the background does not have."""
    from layeringdiff_krita.krita_bridge import KritaBridge

    doc, layer, bridge = ready(fake_krita)
    split_photo(fake_krita, bridge, doc)
    monkeypatch.setattr(KritaBridge, "_ungroup", lambda self, *a: False)
    bg_px = bridge.read_active_layer(doc)
    text = bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), split_of(bg_px.image))
    assert "(in group 'peel 2': Krita would not ungroup it here, in a locked group?)" in text
    assert "keeps the look" not in text


def test_an_animated_layer_is_refused_with_how_to_split_its_frame(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    layer._animated = True
    with pytest.raises(UserError, match="'photo' is animated: its layers would hold this frame only") as info:
        bridge.read_active_layer(doc)
    assert "Edit > Paste into New Layer" in str(info.value)


def test_channels_switched_off_in_the_source_are_switched_off_on_its_group(fake_krita):
    """Layer Properties > Active Channels: red off shows the layer without its red; the group of its split, and a
    peel of a background with red off, hide it too (before: the group showed it, up to 191/255 off)."""
    doc, layer, bridge = ready(fake_krita)
    next(c for c in layer.channels() if c.name() == "Red").setVisible(False)
    split_photo(fake_krita, bridge, doc)
    group = doc.rootNode().childNodes()[1]
    assert [c.name() for c in group.channels() if not c.visible()] == ["Red"]
    assert all(c.visible() for n in group.childNodes() for c in n.channels())
    background = doc.activeNode()
    next(c for c in background.channels() if c.name() == "Green").setVisible(False)
    bg_px = bridge.read_active_layer(doc)
    text = bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), split_of(bg_px.image))
    peel = next(n for n in group.childNodes() if n.name() == "peel 2")
    assert "keeps the look of 'background 1'" in text
    assert [c.name() for c in peel.channels() if not c.visible()] == ["Green"]


def test_the_new_background_is_made_active_again_after_kritas_queued_signals(fake_krita):
    """Krita activates each new layer from queued signals after the call returns: the bridge activates the
    background again from a timer, unless its document was closed meanwhile."""
    doc, layer, bridge = ready(fake_krita)
    split_photo(fake_krita, bridge, doc)
    background = doc.activeNode()
    doc.setActiveNode(doc.rootNode().childNodes()[1].childNodes()[1])  # what Krita's queued signals do
    for call in bridge.ui.later_calls:
        call()
    assert doc.activeNode() == background
    doc.setActiveNode(layer)
    doc.close()
    for call in bridge.ui.later_calls:
        call()
    assert doc.activeNode() == layer  # a closed document is left alone


def test_the_delayed_activation_leaves_a_document_alone_once_its_view_is_gone(fake_krita):
    """Krita deletes the view while it quits (or the view is closed) with the document still open, and Document's
    setActiveNode through a deleted view crashed Krita 5.3 and 6.0 when quitting just after Undo split: the second
    activation happens only while the document is in the active view, and finds the layer afresh."""
    doc, layer, bridge = ready(fake_krita)
    split_photo(fake_krita, bridge, doc)
    background = doc.activeNode()
    calls = list(bridge.ui.later_calls)
    doc.setActiveNode(layer)
    fake_krita.Krita.instance().window.view.doc = None  # the view closed, the document still open
    for call in calls:
        call()
    assert doc.activeNode() == layer
    fake_krita.Krita.instance().window.addView(doc)
    doc.setActiveNode(layer)
    background.remove()  # the layer went (Undo) before the timer fired
    for call in calls:
        call()
    assert doc.activeNode() == layer


def test_the_delayed_activation_is_left_undone_once_krita_is_quitting(fake_krita):
    """File > Quit closes (hides) the window and its view at once and deletes them later, still Krita's active
    ones meanwhile (the crash came from there); applicationClosing (Qt's aboutToQuit) comes later still: a timer
    due after either leaves the document alone."""
    for quitting in ("window closed", "applicationClosing"):
        doc, layer, bridge = ready(fake_krita)
        split_photo(fake_krita, bridge, doc)
        doc.setActiveNode(layer)
        if quitting == "window closed":
            fake_krita.Krita.instance().window.view.shown = False
        else:
            bridge.stop()
        for call in bridge.ui.later_calls:
            call()
        assert doc.activeNode() == layer, quitting
        fake_krita.Krita.reset()


def test_a_multi_selection_is_narrowed_to_the_source_before_hiding_it(fake_krita):
    """Krita keeps a multi-selection when one of its layers is activated, and its hide action hides every selected
    layer: the bridge activates another layer first, then the source alone."""
    doc, layer = setup_doc(fake_krita)
    shown(fake_krita, doc)
    other = doc.createNode("sketch", "paintlayer")
    doc.rootNode()._attach(other, 1)
    fake_krita.Krita.instance().window.view.selected = [layer, other]
    bridge = bridge_for(fake_krita)
    _, text = split_photo(fake_krita, bridge, doc)
    assert not layer.visible() and other.visible() and "would not hide" not in text
    assert [t for t, _, _ in doc.history] == ["Add Layer", "Property Changes"]


def test_when_krita_will_not_select_or_ungroup_the_peel_stays_in_its_group(fake_krita, monkeypatch):
    from layeringdiff_krita.krita_bridge import KritaBridge

    doc, layer, bridge = ready(fake_krita)
    split_photo(fake_krita, bridge, doc)
    picture = doc.projection()
    real_trigger = fake_krita.Action.trigger
    monkeypatch.setattr(fake_krita.Action, "trigger",
                        lambda self: None if self.name == "quick_ungroup" else real_trigger(self))
    bg_px = bridge.read_active_layer(doc)
    text = bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), split_of(bg_px.image))
    assert "in group 'peel 2'" in text and doc.activeNode().name() == "background 2"
    assert same_picture(doc.projection(), picture)
    bridge.undo_last()
    monkeypatch.setattr(KritaBridge, "_selected", lambda self, doc: [])  # the selection never follows
    bg_px = bridge.read_active_layer(doc)
    text = bridge.apply_peel(Job("3", "peel", doc, bg_px, "ball", index=2), split_of(bg_px.image))
    assert "in group 'peel 2'" in text and "would not hide it" in text


def test_layers_krita_did_not_insert_leave_the_document_unchanged(fake_krita, monkeypatch):
    doc, layer, bridge = ready(fake_krita)
    px = bridge.read_active_layer(doc)
    monkeypatch.setattr(fake_krita.Node, "addChildNode", lambda self, child, above: True)
    with pytest.raises(UserError) as caught:
        bridge.apply_split(Job("1", "split", doc, px, "cat"), split_of(px.image))
    assert str(caught.value) == "Krita did not insert the new layers; the document is unchanged."
    assert tree(doc.rootNode()) == [("photo", True)] and not doc.history


@pytest.mark.parametrize("kind", ["split", "peel"])
def test_a_source_deleted_during_the_job_is_named(fake_krita, kind):
    doc, layer, bridge = ready(fake_krita)
    if kind == "peel":
        split_photo(fake_krita, bridge, doc)
    px = bridge.read_active_layer(doc)
    px.node.remove()
    with pytest.raises(UserError) as caught:
        apply = bridge.apply_peel if kind == "peel" else bridge.apply_split
        apply(Job("2", kind, doc, px, "ball", index=2), split_of(px.image))
    assert str(caught.value) == (f"The layer '{px.name}' was deleted while the job ran, so the result was not "
                                 "inserted; the document is unchanged.")


def test_a_split_deep_in_nested_groups_is_taken_back(fake_krita):
    doc, layer = setup_doc(fake_krita)
    shown(fake_krita, doc)
    outer, inner = doc.createGroupLayer("outer"), doc.createGroupLayer("inner")
    doc.rootNode()._detach(layer)
    doc.rootNode()._attach(outer, 0)
    outer._attach(inner, 0)
    inner._attach(layer, 0)
    bridge = bridge_for(fake_krita)
    picture = doc.projection()
    split_photo(fake_krita, bridge, doc)
    assert tree(inner) == [("photo", False), ("cat", True)] and same_picture(doc.projection(), picture)
    assert bridge.undo_last().startswith("Took back the split of 'photo'")
    assert tree(inner) == [("photo", True)]


def test_krita_without_layer_styles_in_its_api_still_splits_and_peels_flat(fake_krita, monkeypatch):
    """Krita before 5.2 has no layerStyleToAsl: no style to carry, and no group kept for one."""
    monkeypatch.delattr(fake_krita.Node, "layerStyleToAsl")
    monkeypatch.delattr(fake_krita.Node, "setLayerStyleFromAsl")
    doc, layer, bridge = ready(fake_krita)
    split_photo(fake_krita, bridge, doc)
    bg_px = bridge.read_active_layer(doc)
    text = bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), split_of(bg_px.image))
    assert "in group" not in text


def test_peeled_layers_never_take_a_name_the_group_has(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    split_photo(fake_krita, bridge, doc)
    group = doc.rootNode().childNodes()[1]
    group._attach(doc.createNode("2 ball", "paintlayer"), 0)  # the artist's own layer, named as a peel would be
    bg_px = bridge.read_active_layer(doc)
    bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), split_of(bg_px.image))
    names = [n.name() for n in group.childNodes()]
    assert names.count("2 ball") == 1 and "2 ball 2" in names


@pytest.mark.parametrize("kind,message", [
    ("group", "'g' is a group layer: choose a paint layer to split (choose one of the paint layers inside it)."),
    ("vectorlayer", "'v' is a vector layer: choose a paint layer to split (Layer > Convert > to Paint Layer makes "
                    "one from it)."),
    ("none", "Choose a layer in the Layers docker first."),
    ("colorize", "'photo' has a colorize mask ('colours'), which the new layers cannot carry over: apply it or "
                 "remove it first (its right-click menu in the Layers docker)."),
    ("left of it", "Layer 'photo' is empty inside the canvas."),
    ("above it", "Layer 'photo' is empty inside the canvas."),
])
def test_layers_that_cannot_be_split_say_exactly_why(fake_krita, kind, message):
    from layeringdiff_krita.krita_bridge import KritaBridge

    rects = {"left of it": (-20, 4, 20, 10), "above it": (5, -10, 20, 10)}
    doc, layer = setup_doc(fake_krita, layer_rect=rects.get(kind, (5, 4, 20, 10)))
    if kind == "group":
        doc.setActiveNode(doc.createGroupLayer("g"))
    elif kind == "vectorlayer":
        doc.setActiveNode(doc.createNode("v", "vectorlayer"))
    elif kind == "none":
        doc.active = None
    elif kind == "colorize":
        layer._attach(doc.createNode("colours", "colorizemask"), 0)
    with pytest.raises(UserError) as caught:
        KritaBridge().read_active_layer(doc)
    assert str(caught.value) == message


@pytest.mark.parametrize("rect,read", [((0, 0, 40, 30), (0, 0, 40, 30)), ((-3, -2, 4, 3), (0, 0, 1, 1)),
                                       ((39, 29, 5, 5), (39, 29, 1, 1))])
def test_a_layer_is_read_over_its_part_inside_the_canvas(fake_krita, rect, read):
    from layeringdiff_krita.krita_bridge import KritaBridge

    doc, layer = setup_doc(fake_krita, layer_rect=rect)
    px = KritaBridge().read_active_layer(doc)
    assert px.rect == read and px.image.data == layer.pixelData(*read)


def test_refusals_after_a_generate_or_a_peel_name_it(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    image = Image(40, 30, "BGRA", "u8", painting(40, 30, 3).tobytes())
    bridge.apply_generate(Job("1", "generate", doc, None, "fox", size=(40, 30)),
                          Result("job", image, image, Image(40, 30, "L", "u8", bytes(1200))))
    doc.record("Stroke", lambda: None, lambda: None)
    with pytest.raises(UserError, match=r"^The document changed after the generate \('Stroke'\), so Undo generate "):
        bridge.undo_last()


def test_a_generated_document_has_the_printing_resolution_and_the_default_profile(fake_krita):
    bridge = bridge_for(fake_krita)
    job = Job("1", "generate", None, None, "fox", size=(16, 8))
    image = Image(16, 8, "BGRA", "u8", painting(16, 8, 2).tobytes())
    bridge.apply_generate(job, Result("job", image, image, Image(16, 8, "L", "u8", bytes(128))))
    assert (job.doc.resolution(), job.doc.profile) == (300.0, "")


def test_no_active_layer_when_the_result_arrives_is_fine(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    px = bridge.read_active_layer(doc)
    doc.active = None  # the artist clicked away from every layer while the job ran
    bridge.apply_split(Job("1", "split", doc, px, "cat"), split_of(px.image))
    assert bridge.undo_last().startswith("Took back") and tree(doc.rootNode()) == [("photo", True)]


def test_a_layer_moved_out_of_its_group_without_undo_is_noticed(fake_krita):
    """The layer tree's depth counts, not only its order: moving the last layer of a group to just after the
    group keeps the order of the layers and changes only their depth."""
    doc, layer = setup_doc(fake_krita)
    shown(fake_krita, doc)
    outer = doc.createGroupLayer("outer")
    doc.rootNode()._detach(layer)
    doc.rootNode()._attach(outer, 0)
    outer._attach(layer, 0)
    bridge = bridge_for(fake_krita)
    split_photo(fake_krita, bridge, doc)
    group = outer.childNodes()[1]
    top = group.childNodes()[-1]
    group._detach(top)  # a script's move: no undo entry
    outer._attach(top, 2)
    with pytest.raises(UserError, match="without an undo entry"):
        bridge.undo_last()


def test_a_multi_selection_is_narrowed_for_a_peel_too(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    split_photo(fake_krita, bridge, doc)
    background = doc.activeNode()
    sibling = doc.rootNode().childNodes()[1].childNodes()[1]
    fake_krita.Krita.instance().window.view.selected = [background, sibling]
    bg_px = bridge.read_active_layer(doc)
    text = bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), split_of(bg_px.image))
    assert "would not hide" not in text and "in group" not in text
    assert not background.visible() and sibling.visible()


def test_a_second_peel_hides_the_old_background_with_undo_where_krita_keeps_the_ungrouped_pair_selected(fake_krita):
    """Krita 5.1.5 after a peel: its two ungrouped layers stay selected, and activating either, or the next peel's
    new group, keeps them so; a layer outside them is activated first (before: hidden without an undo entry, and
    Ctrl+Z showed holes)."""
    doc, layer, bridge = ready(fake_krita)
    split_photo(fake_krita, bridge, doc)
    background = doc.activeNode()
    sibling = doc.rootNode().childNodes()[1].childNodes()[1]
    view = fake_krita.Krita.instance().window.view
    view.selected = [background, sibling]
    view.sticky = lambda node: node.name().startswith("peel")
    bg_px = bridge.read_active_layer(doc)
    entries = len(doc.history)
    text = bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), split_of(bg_px.image))
    assert "would not hide" not in text and not background.visible()
    assert "Property Changes" in [e[0] for e in doc.history[entries:]]


def test_a_hidden_background_with_a_look_is_peeled_into_a_hidden_group_of_visible_layers(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    split_photo(fake_krita, bridge, doc)
    background = doc.activeNode()
    background.setOpacity(100)
    background.setVisible(False)
    bg_px = bridge.read_active_layer(doc)
    bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), split_of(bg_px.image))
    peel = doc.rootNode().childNodes()[1].childNodes()[1]
    assert peel.name() == "peel 2" and not peel.visible()
    assert tree(peel) == [("background 2", True), ("2 ball", True)]  # showing the group shows them


def test_no_document_is_said_in_full(fake_krita):
    from layeringdiff_krita.krita_bridge import KritaBridge

    with pytest.raises(UserError) as caught:
        KritaBridge().active_document()
    assert str(caught.value) == "Open or create a document first."


def add_selection_mask(mk, doc, layer, name, selected):
    """A selection mask under `layer` (the new one on top) selecting `selected` (HxW bool over the canvas)."""
    mask = doc.createSelectionMask(name)
    mask.setPixelData((selected * 255).astype(np.uint8).tobytes(), 0, 0, doc.w, doc.h)
    layer.addChildNode(mask, layer.childNodes()[-1] if layer.childNodes() else None)
    return mask


def discs(w, h):
    """Two overlapping discs over a 40x30 canvas's layer area (5, 4, 20, 10): the left one and the right one."""
    yy, xx = np.mgrid[0:h, 0:w]
    return (np.hypot(xx - 12, yy - 9) < 5), (np.hypot(xx - 17, yy - 9) < 5)


def layers_result(image, objects, colours=()):
    """An exact split of an opaque layer into len(objects) soft layers and a background: every layer shows the
    layer's own colour wherever it is visible, the background HIDDEN where the objects hide it all."""
    w, h = image.width, image.height
    c = np.frombuffer(image.data, np.uint8).reshape(h, w, 4)
    alphas = [np.roll(soft_disc(w, h), 4 * i, axis=1) for i in range(len(objects))]
    layers = []
    for a in alphas:
        layer = c.copy()
        layer[..., 3] = a
        layers.append(Image(w, h, "BGRA", "u8", layer.tobytes()))
    bg = c.copy()
    bg[np.max(alphas, axis=0) == 255, :3] = HIDDEN
    info = {"recomposition_error": 0.0, "objects": list(objects), **({"colours": list(colours)} if colours else {})}
    background, alpha = Image(w, h, "BGRA", "u8", bg.tobytes()), Image(w, h, "L", "u8", alphas[0].tobytes())
    return Result("job", layers[0], background, alpha, info, layers[1:])


def test_split_into_layers_reads_the_selection_masks_top_first_and_the_front_one_wins(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    left, right = discs(40, 30)
    add_selection_mask(fake_krita, doc, layer, "Selection Mask", left)  # the bottom one: behind
    add_selection_mask(fake_krita, doc, layer, "cup", right)  # the top one: the front object
    px, objects = bridge.read_objects(doc)
    assert px.rect == (5, 4, 20, 10) and objects.order == "labels" and objects.source == "2 selection masks"
    assert objects.names == {1: "cup", 2: "object"}  # Krita's own name for a mask is no object's name
    labels = np.frombuffer(objects.labels.data, np.uint8).reshape(10, 20)
    assert (objects.labels.width, objects.labels.height, objects.labels.order, objects.labels.dtype) == \
        (20, 10, "L", "u8")
    assert np.array_equal(labels == 1, right[4:14, 5:25])  # the front one wins where they overlap
    assert np.array_equal(labels == 2, left[4:14, 5:25] & ~right[4:14, 5:25])
    # with a selection mask active (its row clicked in the Layers docker), its layer is the one split
    doc.setActiveNode(layer.childNodes()[0])
    assert bridge.read_objects(doc)[0].node == layer
    assert bridge.read_active_layer(doc).node == layer  # Split selected layer too, not "convert the mask"
    assert not objects.soft  # hard masks: the labels hold them exactly
    add_selection_mask(fake_krita, doc, layer, "soft", left * (200 / 255))
    assert bridge.read_objects(doc)[1].soft  # a value other than 0 and 255: the controller says what it loses


def test_the_objects_messages_in_full_and_where_their_limits_are(fake_krita, monkeypatch):
    doc, layer, bridge = ready(fake_krita)
    with pytest.raises(NoObjects) as info:
        bridge.read_objects(doc)
    assert str(info.value) == (
        "Give 'photo' its objects first: a selection mask for each (select an object, then right-click the layer > "
        "Add > Local Selection; the top mask is the front object), or a paint layer named 'labels' right above it "
        "with each object painted in one flat colour, or their names as phrases, front first: cat; vase; table.")
    half = np.zeros((30, 40), np.uint8)
    half[6:9, 8:12] = 128  # just half selected: enough
    mask = doc.createSelectionMask("cup")
    mask.setPixelData(half.tobytes(), 0, 0, 40, 30)
    layer.addChildNode(mask, None)
    assert bridge.read_objects(doc)[1].source == "1 selection mask"
    half[half == 128] = 127
    mask.setPixelData(half.tobytes(), 0, 0, 40, 30)
    with pytest.raises(UserError) as info:
        bridge.read_objects(doc)
    assert str(info.value) == ("The selection mask 'cup' selects nothing of 'photo' (or less than half of each "
                               "pixel): paint its object into it, or delete it.")
    mask.setPixelData((half * 0 + 255).tobytes(), 0, 0, 40, 30)
    monkeypatch.setattr("layeringdiff_krita.krita_bridge.MAX_OBJECTS", 2)
    add_selection_mask(fake_krita, doc, layer, "vase", np.ones((30, 40), bool))
    assert bridge.read_objects(doc)[1].source == "2 selection masks"  # as many as allowed
    add_selection_mask(fake_krita, doc, layer, "lamp", np.ones((30, 40), bool))
    with pytest.raises(UserError) as info:
        bridge.read_objects(doc)
    assert str(info.value) == "'photo' has 3 selection masks; at most 2 objects."


def test_a_label_layer_counts_as_painted_by_its_alpha_alone(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    for mask in [m for m in layer.childNodes()]:
        mask.remove()
    labels = doc.createNode("labels", "paintlayer")
    doc.rootNode().addChildNode(labels, layer)
    paint = np.full((10, 20, 4), 255, np.uint8)
    paint[..., 3] = 0  # bright colours, nothing painted
    labels.setPixelData(paint.tobytes(), 5, 4, 20, 10)
    with pytest.raises(UserError, match="The label layer 'labels' paints nothing over 'photo'"):
        bridge.read_objects(doc)
    paint[3, 4, 3] = 31
    labels.setPixelData(paint.tobytes(), 5, 4, 20, 10)
    with pytest.raises(UserError, match="paints nothing"):
        bridge.read_objects(doc)
    paint[3, 4, 3] = 32  # faint, but the layer's strongest (a brush at low opacity): painted
    labels.setPixelData(paint.tobytes(), 5, 4, 20, 10)
    assert bridge.read_objects(doc)[1].colours


def test_objects_the_backend_names_out_of_its_colours_are_objects(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    px = bridge.read_active_layer(doc)
    objects = Objects(Image(20, 10, "BGRA", "u8", bytes(800)), {}, "auto", "the label layer 'labels'", colours=True)
    res = layers_result(px.image, [0, 1, 3], colours=["#ff0000", "#00ff00"])
    bridge.apply_split(Job("1", "split", doc, px, "", objects=objects), res)
    group = doc.rootNode().childNodes()[1]
    assert [name for name, _ in tree(group)] == ["background 3", "3 object", "2 #ff0000", "1 object"]


@pytest.mark.parametrize("case,words", [
    ("nothing", "a selection mask for each .* a paint layer named 'labels' right above it"),
    ("empty mask", "The selection mask 'cup' selects nothing of 'photo'"),
    ("label layer float", "The label layer 'labels' must be an RGB paint layer of 8 or 16-bit integers .* Layer > "
                          "Convert > Convert Layer Color Space"),
    ("label layer empty", "The label layer 'labels' paints nothing over 'photo'"),
    ("label layer below", "a selection mask for each")])
def test_split_into_layers_says_what_is_missing(fake_krita, case, words):
    doc, layer, bridge = ready(fake_krita)
    if case == "empty mask":
        add_selection_mask(fake_krita, doc, layer, "cup", np.zeros((30, 40), bool))
    elif case.startswith("label layer"):
        labels = doc.createNode("labels", "paintlayer")
        if case == "label layer float":
            labels.setColorSpace("RGBA", "F32", "sRGB")
        if case == "label layer below":  # painted, but under the layer: not its label layer
            doc.rootNode().setChildNodes([labels, layer])
            labels.setPixelData(painting(20, 10, 3).tobytes(), 5, 4, 20, 10)
        else:
            doc.rootNode().addChildNode(labels, layer)
    with pytest.raises(UserError, match=words):
        bridge.read_objects(doc)


def test_split_into_layers_from_a_label_layer_sends_its_colours_for_the_backend_to_order(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    labels = doc.createNode("Labels (flat colours)", "paintlayer")
    doc.rootNode().addChildNode(labels, layer)
    colours = painting(20, 10, 3)
    labels.setPixelData(colours.tobytes(), 5, 4, 20, 10)
    px, objects = bridge.read_objects(doc)
    assert px.node == layer and objects.order == "auto" and objects.names == {}
    assert objects.source == "the label layer 'Labels (flat colours)'"
    assert (objects.labels.order, objects.labels.dtype) == ("BGRA", "u8") and objects.labels.data == colours.tobytes()
    assert (objects.labels.width, objects.labels.height) == (20, 10)


def test_a_16_bit_label_layer_is_read_as_its_8_bit_colours_and_the_label_layer_active_splits_the_one_below(
        fake_krita):
    """In a 16-bit document every new layer is 16-bit: its label layer was always refused. And an artist who has just
    painted the labels has that layer active: it was told to give 'labels' its objects."""
    doc, layer, bridge = ready(fake_krita)
    labels = doc.createNode("labels", "paintlayer")
    labels.setColorSpace("RGBA", "U16", "sRGB")
    doc.rootNode().addChildNode(labels, layer)
    colours = painting(20, 10, 3)
    wide = (colours.astype(np.uint16) * 257).astype("<u2")  # the same colours at 16 bits a channel
    labels.setPixelData(wide.tobytes(), 5, 4, 20, 10)
    doc.setActiveNode(labels)
    px, objects = bridge.read_objects(doc)
    assert px.node == layer and objects.source == "the label layer 'labels'"
    assert (objects.labels.order, objects.labels.dtype) == ("BGRA", "u8") and objects.labels.data == colours.tobytes()


def test_a_result_made_from_pixels_changed_since_is_not_inserted(fake_krita):
    """Painting on the layer while its split ran: the group made from the old pixels hid the new strokes."""
    doc, layer, bridge = ready(fake_krita)
    px = bridge.read_active_layer(doc)
    before = whole_tree(doc.rootNode())
    changed = painting(20, 10, 1)
    changed[2:5, 3:9, :3] = (0, 0, 255)  # a red bar
    layer.setPixelData(changed.tobytes(), 5, 4, 20, 10)
    with pytest.raises(UserError, match="'photo' was changed while the job ran .* the result was not inserted"):
        bridge.apply_split(Job("1", "split", doc, px, "cat"), split_of(px.image))
    assert whole_tree(doc.rootNode()) == before
    layer.setPixelData(painting(20, 10, 1).tobytes(), 5, 4, 20, 10)  # as it was: inserted
    bridge.apply_split(Job("1", "split", doc, px, "cat"), split_of(px.image))
    assert len(doc.rootNode().childNodes()) == len(before) + 1


def test_a_mask_wholly_behind_others_and_an_object_that_shows_nowhere_are_named(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    left, right = discs(40, 30)
    add_selection_mask(fake_krita, doc, layer, "shadow", left)  # under the cup's mask: wholly behind it
    add_selection_mask(fake_krita, doc, layer, "cup", left | right)
    add_selection_mask(fake_krita, doc, layer, "saucer", right)  # on top: the front object
    px, objects = bridge.read_objects(doc)
    assert objects.names == {1: "saucer", 2: "cup", 3: "shadow"}
    res = split_of(px.image)
    res.behind = [res.foreground]
    res.info.update(objects=[1, 2], empty=[2])  # the backend: label 3 has no pixel, label 2's layer shows nowhere
    text = bridge.apply_split(Job("1", "split", doc, px, "", objects=objects), res)
    assert "(the mask 'shadow' is wholly behind the masks above: no layer)" in text, text
    assert "('2 cup' is empty: its object lies only over transparent pixels of 'photo')" in text, text


def test_the_label_layer_is_found_past_the_groups_of_earlier_splits(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    labels = doc.createNode("labels", "paintlayer")
    doc.rootNode().addChildNode(labels, layer)
    labels.setPixelData(painting(20, 10, 3).tobytes(), 5, 4, 20, 10)
    px, objects = bridge.read_objects(doc)
    res = layers_result(px.image, [1, 2, 3], colours=["#ff0000", "#00ff00", "#0000ff"])
    bridge.apply_split(Job("1", "split", doc, px, "", objects=objects), res)
    assert tree(doc.rootNode()) == [("photo", False), ("photo split", True), ("labels", True)]
    doc.setActiveNode(layer)
    again, objects = bridge.read_objects(doc)  # a second try in another order, the first group still there
    assert again.node == layer and objects.source == "the label layer 'labels'" and objects.colours
    above = doc.createNode("sketch", "paintlayer")  # a paint layer between: not the label layer's place any more
    doc.rootNode().addChildNode(above, doc.rootNode().childNodes()[1])
    with pytest.raises(NoObjects):
        bridge.read_objects(doc)


def test_split_into_layers_makes_one_group_front_to_back_and_undo_takes_it_back_in_one_click(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    picture = doc.projection()
    left, right = discs(40, 30)
    add_selection_mask(fake_krita, doc, layer, "vase", left)
    add_selection_mask(fake_krita, doc, layer, "cat", right)
    doc.history, doc.index = [], 0
    px, objects = bridge.read_objects(doc)
    res = layers_result(px.image, [1, 2])
    text = bridge.apply_split(Job("1", "split", doc, px, "", objects=objects), res)
    assert text.startswith("Split 'photo' into group 'photo split' (1 cat, 2 vase, background 2); 'photo' is hidden")
    assert text.endswith("; the objects came from 2 selection masks")
    group = doc.rootNode().childNodes()[1]
    assert tree(doc.rootNode()) == [("photo", False), ("photo split", True)]
    assert tree(group) == [("background 2", True), ("2 vase", True), ("1 cat", True)]
    assert pixels_of(group.childNodes()[2], px.rect).tobytes() == res.foreground.data
    assert pixels_of(group.childNodes()[1], px.rect).tobytes() == res.behind[0].data
    assert pixels_of(group.childNodes()[0], px.rect).tobytes() == res.background.data
    assert same_picture(doc.projection(), picture)
    # the selection masks stay with the hidden source, ready for another try
    assert [m.name() for m in layer.childNodes()] == ["vase", "cat"]
    assert doc.activeNode().name() == "background 2"
    states = [tree(doc.rootNode())]
    for _ in range(2):  # every undo state shows the same picture
        doc.undo()
        states.append(tree(doc.rootNode()))
        assert same_picture(doc.projection(), picture)
    assert states[-1] == [("photo", True)]
    for expected in reversed(states[:-1]):
        doc.redo()
        assert tree(doc.rootNode()) == expected and same_picture(doc.projection(), picture)
    assert bridge.undo_last().startswith("Took back the split of 'photo'")
    assert tree(doc.rootNode()) == [("photo", True)] and same_picture(doc.projection(), picture)


def test_split_into_layers_names_a_label_layers_objects_by_colour_in_the_backends_order(fake_krita):
    doc, layer, bridge = ready(fake_krita)
    px = bridge.read_active_layer(doc)
    objects = Objects(Image(20, 10, "BGRA", "u8", bytes(800)), {}, "auto", "the label layer 'labels'", colours=True)
    res = layers_result(px.image, [2, 1, 3], colours=["#ff0000", "#00ff00", "#0000ff"])
    res.info["order"] = "auto"
    text = bridge.apply_split(Job("1", "split", doc, px, "still life", objects=objects), res)
    group = doc.rootNode().childNodes()[1]
    assert tree(group) == [("background 3", True), ("3 #0000ff", True), ("2 #ff0000", True), ("1 #00ff00", True)]
    assert text.endswith("the objects came from the label layer 'labels', ordered from where they touch (the phrase "
                         "field lists it front first: to change it, Undo split, edit it and split again)"), text
    for unordered, words in (([3], ", ordered from where they touch (1 touching no other goes behind them, the "
                                    "smaller in front) (the phrase"),
                             ([1, 3], "(2 touching no other go behind them"),
                             ([2, 1, 3], ", which touch no other: the smaller in front (the phrase")):
        res.info["unordered"] = unordered  # before: "from where they touch" where none touched
        text = bridge.apply_split(Job("1", "split", doc, px, "still life", objects=objects), res)
        assert words in text, text
    res.info["order"] = "colours"
    text = bridge.apply_split(Job("1", "split", doc, px, "", objects=objects), res)
    assert ", in the order you gave (the phrase field" in text, text
    wrong = layers_result(px.image, [1, 2])
    wrong.info["objects"] = [1]
    with pytest.raises(UserError, match="sent 2 layers for 1 objects; the document is unchanged"):
        bridge.apply_split(Job("2", "split", doc, px, "", objects=objects), wrong)


def test_the_layer_is_the_one_selected_in_the_active_view_of_a_second_view(fake_krita):
    # Window > New View: Document.activeNode() stays the first view's current layer, the artist works in the second
    doc, photo, bridge = ready(fake_krita)
    paper = doc.createNode("paper", "paintlayer")
    doc.rootNode().addChildNode(paper, None)
    paper.setPixelData(painting(20, 10, 2).tobytes(), 5, 4, 20, 10)
    doc.active = paper  # the first view's
    view = fake_krita.Krita.instance().window.view
    view.selected = [photo]  # the active view's
    assert bridge.read_active_layer(doc).name == "photo"
    assert bridge._state(doc)[1] == photo.uniqueId()  # the undo returns to it
    view.selected = [photo, paper]  # the first view's layer among those selected here: that one, as in one view
    assert bridge.read_active_layer(doc).name == "paper"
    other = doc.createNode("other", "paintlayer")
    doc.rootNode().addChildNode(other, None)
    view.selected = [photo, other]  # which one? the artist says
    with pytest.raises(UserError) as caught:
        bridge.read_active_layer(doc)
    assert "Several layers are selected in this view" in str(caught.value)
    assert bridge._state(doc)[1] == paper.uniqueId()  # a result arriving now is inserted all the same
    view.doc = None  # no view shows the document: its own active layer
    assert bridge.read_active_layer(doc).name == "paper"


def test_a_layer_partly_past_the_canvas_is_split_inside_it_and_its_background_keeps_the_rest(fake_krita):
    """The canvas's part is split (its hints are the canvas's); the background keeps the pixels past the canvas as
    they were, through a peel too, so a larger canvas or the Move tool later shows the layer whole (before: cut at
    the old edge, the rest in the hidden source alone)."""
    from layeringdiff_krita.krita_bridge import outside_strips

    doc, layer, bridge = ready(fake_krita)
    whole = painting(60, 50, 4)
    layer.pixels = {(-10, -5, 60, 50): whole.tobytes()}  # past every edge of the 40x30 canvas
    px = bridge.read_active_layer(doc)
    assert px.rect == (0, 0, 40, 30)
    res = split_of(px.image)
    said = bridge.apply_split(Job("1", "split", doc, px, "cat"), res)
    assert said.endswith("; its pixels past the canvas are not split: 'background 1' keeps them as they were"), said
    group = doc.rootNode().childNodes()[-1]
    bg, fg = group.childNodes()
    assert np.array_equal(pixels_of(fg, px.rect), np.frombuffer(res.foreground.data, np.uint8).reshape(30, 40, 4))
    assert fg.bounds().width() == 40 and fg.bounds().height() == 30  # the objects are the canvas's alone
    kept = np.frombuffer(bg.pixelData(-10, -5, 60, 50), np.uint8).reshape(50, 60, 4).copy()
    inside = kept[5:35, 10:50].copy()
    assert inside.tobytes() == res.background.data
    kept[5:35, 10:50] = whole[5:35, 10:50]
    assert np.array_equal(kept, whole)  # outside the canvas: the layer's pixels, all of them
    assert len(outside_strips(bg.bounds(), 40, 30)) == 4
    # a peel of that background keeps them too
    bg_px = bridge.read_active_layer(doc)
    assert bg_px.rect == (0, 0, 40, 30) and bg_px.image.data == res.background.data
    peel = split_of(bg_px.image)
    said = bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), peel)
    assert "'background 2' keeps them as they were" in said, said
    bg2 = next(n for n in group.childNodes() if n.name() == "background 2")
    kept = np.frombuffer(bg2.pixelData(-10, -5, 60, 50), np.uint8).reshape(50, 60, 4).copy()
    assert kept[5:35, 10:50].tobytes() == peel.background.data
    kept[5:35, 10:50] = whole[5:35, 10:50]
    assert np.array_equal(kept, whole)
    doc, layer, bridge = ready(fake_krita)  # wholly inside: no word of it
    px = bridge.read_active_layer(doc)
    assert "past the canvas" not in bridge.apply_split(Job("3", "split", doc, px, "cat"), split_of(px.image))


def test_a_layer_renamed_while_its_job_ran_gives_its_new_name_to_the_group_and_the_messages(fake_krita):
    """Before: the group and every message (Undo split's too) named the layer as it was called when the job began."""
    doc, layer, bridge = ready(fake_krita)
    px = bridge.read_active_layer(doc)
    layer.setName("astronaut")  # in the Layers docker, while the backend works
    said = bridge.apply_split(Job("1", "split", doc, px, ""), split_of(px.image))
    assert said.startswith("Split 'astronaut' into group 'astronaut split'") and "'astronaut' is hidden" in said, said
    assert [n.name() for n in doc.rootNode().childNodes()] == ["astronaut", "astronaut split"]
    bg_px = bridge.read_active_layer(doc)
    bridge.active_node(doc).setName("sky")
    said = bridge.apply_peel(Job("2", "peel", doc, bg_px, "ball", index=2), split_of(bg_px.image))
    assert " from 'sky'" in said and "'sky' is hidden" in said, said
    assert bridge.undo_last() == "Took back the peel of 'sky': the document is as it was before."


@pytest.mark.parametrize("bounds,strips", [
    ((0, 0, 40, 30), []), ((5, 4, 10, 10), []), ((0, 0, 0, 0), []),
    ((-3, 0, 10, 30), [(-3, 0, 3, 30)]), ((35, 28, 10, 10), [(35, 30, 10, 8), (40, 28, 5, 2)]),
    ((-5, -5, 50, 40), [(-5, -5, 50, 5), (-5, 30, 50, 5), (-5, 0, 5, 30), (40, 0, 5, 30)]),
    ((50, 40, 4, 4), [(50, 40, 4, 4)]), ((-9, 2, 4, 4), [(-9, 2, 4, 4)])])
def test_outside_strips_cover_the_extent_past_the_canvas_once(fake_krita, bounds, strips):
    from layeringdiff_krita.krita_bridge import outside_strips

    assert outside_strips(fake_krita.Rect(*bounds), 40, 30) == strips
