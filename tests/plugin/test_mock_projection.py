"""The mock Krita's projection against values worked out by hand: the bridge's picture checks lean on it."""

import numpy as np
import pytest


def doc_with(mk, *layers, w=1, h=1):
    """layers: (BGRA bytes per pixel, opacity 0-255, blend mode, visible), bottom first, on a 1x1 canvas."""
    doc = mk.Krita.instance().createDocument(w, h, "t", "RGBA", "U8", "", 72.0)
    nodes = []
    for bgra, opacity, mode, visible in layers:
        node = doc.createNode(f"l{len(nodes)}", "paintlayer")
        node.setPixelData(bytes(bgra) * (w * h), 0, 0, w, h)
        node._opacity, node._mode, node._visible = opacity, mode, visible
        doc.rootNode()._attach(node, len(nodes))
        nodes.append(node)
    return doc, nodes


def rgba(doc):
    return doc.projection()[0, 0]


RED = (0, 0, 255, 255)  # BGRA


def test_normal_blending_with_alpha_and_opacity(fake_krita):
    doc, _ = doc_with(fake_krita, (RED, 255, "normal", True), ((0, 255, 0, 51), 255, "normal", True))
    assert np.allclose(rgba(doc), [0.8, 0.2, 0, 1])  # green at alpha 0.2 over red
    doc, _ = doc_with(fake_krita, (RED, 255, "normal", True), ((0, 255, 0, 255), 102, "normal", True))
    assert np.allclose(rgba(doc), [0.6, 0.4, 0, 1])  # opacity 40%
    doc, _ = doc_with(fake_krita, ((0, 0, 255, 102), 255, "normal", True), ((255, 0, 0, 102), 255, "normal", True))
    # blue 0.4 over red 0.4: alpha 0.4 + 0.4 * 0.6 = 0.64, red's share 0.24 / 0.64
    assert np.allclose(rgba(doc), [0.375, 0, 0.625, 0.64])


def test_multiply_hidden_layers_and_isolated_groups(fake_krita):
    doc, _ = doc_with(fake_krita, ((51, 128, 255, 255), 255, "normal", True), ((102, 102, 102, 255), 255, "multiply",
                                                                                True))
    assert np.allclose(rgba(doc), [0.4, 128 / 255 * 0.4, 0.2 * 0.4, 1])
    doc, _ = doc_with(fake_krita, (RED, 255, "normal", True), ((255, 0, 0, 255), 255, "normal", False))
    assert np.allclose(rgba(doc), [1, 0, 0, 1])  # the hidden layer does not show
    doc, (red,) = doc_with(fake_krita, (RED, 255, "normal", True))
    group = doc.createGroupLayer("g")
    doc.rootNode()._attach(group, 1)
    for bgra, opacity in (((255, 0, 0, 255), 255), ((0, 255, 0, 255), 127)):
        node = doc.createNode("in", "paintlayer")
        node.setPixelData(bytes(bgra), 0, 0, 1, 1)
        node._opacity = opacity
        group._attach(node, len(group._children))
    group._opacity = 51  # the group's own picture (half green over blue) at 20% over the red
    inner = np.array([0, 127 / 255, 1 - 127 / 255])
    assert np.allclose(rgba(doc)[:3], 0.8 * np.array([1, 0, 0]) + 0.2 * inner)


def test_inherit_alpha_and_transparency_masks(fake_krita):
    doc, (_, top) = doc_with(fake_krita, ((0, 0, 255, 102), 255, "normal", True), ((255, 0, 0, 255), 255, "normal",
                                                                                   True))
    top._inherit = True
    assert np.allclose(rgba(doc), [0, 0, 1, 0.4])  # blue painted only as far as the red below is
    doc, (_, top) = doc_with(fake_krita, (RED, 255, "normal", True), ((255, 0, 0, 255), 255, "normal", True))
    mask = doc.createNode("m", "transparencymask")
    mask.setPixelData(bytes([51]), 0, 0, 1, 1)
    top._attach(mask, 0)
    assert np.allclose(rgba(doc), [0.8, 0, 0.2, 1])


def test_unsupported_looks_are_refused_not_ignored(fake_krita):
    doc, (node,) = doc_with(fake_krita, (RED, 255, "screen", True))
    with pytest.raises(NotImplementedError, match="screen"):
        doc.projection()


def test_reads_see_every_write_at_its_offset(fake_krita):
    doc = fake_krita.Krita.instance().createDocument(4, 4, "t", "RGBA", "U8", "", 72.0)
    node = doc.createNode("n", "paintlayer")
    node.setPixelData(bytes([1, 2, 3, 255]) * 4, 0, 0, 2, 2)
    node.setPixelData(bytes([9, 9, 9, 255]) * 2, 1, 1, 2, 1)  # overlaps the first write's bottom-right pixel
    got = np.frombuffer(node.pixelData(0, 0, 4, 4), np.uint8).reshape(4, 4, 4)
    assert got[0, 0].tolist() == [1, 2, 3, 255] and got[1, 1].tolist() == [9, 9, 9, 255]
    assert got[1, 2].tolist() == [9, 9, 9, 255] and got[3, 3].tolist() == [0, 0, 0, 0]
    b = node.bounds()
    assert (b.x(), b.y(), b.width(), b.height()) == (0, 0, 3, 2)
