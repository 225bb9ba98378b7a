"""A small stand-in for Krita's `krita` module: the parts of the API the plugin's bridge uses.

Nodes keep the rectangles written to them (BGRA for integer depths, RGBA for float ones, one channel for
masks), so reads at any offset see what was written there and transparency elsewhere, like Krita's.
Document.projection() composes the visible layers as Krita does (isolated groups; normal and multiply
blending; opacity; inherit alpha; transparency masks), so tests compare the picture a user would see.
The undo history follows what the real Krita 5.1.5 does (tests/krita checks the real one):
addChildNode, remove and setBlendingMode leave an entry (even on a node not in the document yet),
setChildNodes, setVisible, setOpacity and setPixelData leave none; the toggle_layer_visibility and
quick_ungroup actions act on the active view's selection and leave one entry each. Used for fast unit
tests; the real Krita runs in tests/krita.
"""

import itertools
import types

import numpy as np

BYTES_PER_PIXEL = {"U8": 4, "U16": 8, "F16": 8, "F32": 16}
CHANNEL = {"U8": ("<u1", 255.0), "U16": ("<u2", 65535.0), "F16": ("<f2", 1.0), "F32": ("<f4", 1.0)}
MASKS = ("transparencymask", "filtermask", "transformmask", "selectionmask", "colorizemask")
_ids = itertools.count(1)


class Rect:
    def __init__(self, x, y, w, h):
        self._r = (x, y, w, h)

    def x(self):
        return self._r[0]

    def y(self):
        return self._r[1]

    def width(self):
        return self._r[2]

    def height(self):
        return self._r[3]


class Node:
    def __init__(self, doc, name, kind, model="RGBA", depth="U8"):
        self.doc, self._name, self._type = doc, name, kind
        self._model, self._depth, self._profile = model, depth, doc.colorProfile() if doc is not None else "sRGB"
        self._children, self._parent, self._visible = [], None, True
        self._id = next(_ids)
        self._opacity, self._mode, self._inherit, self._label, self._locked, self._style = 255, "normal", False, 0, \
            False, ""
        self.pixels = {}  # (x, y, w, h) -> bytes written there, oldest first (a later write wins where they overlap)
        self._animated = False
        self._off: set = set()  # channels switched off (Layer Properties > Active Channels), by name

    def animated(self):
        return self._animated

    def channels(self):
        names = ("Alpha",) if self._type in MASKS else ("Blue", "Green", "Red", "Alpha")
        return [Channel(self, name) for name in names]

    def __eq__(self, other):
        return isinstance(other, Node) and other._id == self._id

    def __hash__(self):
        return self._id

    def name(self):
        return self._name

    def setName(self, name):
        self._name = name

    def type(self):
        return self._type

    def uniqueId(self):
        return self._id

    def visible(self):
        return self._visible

    def setVisible(self, v):
        assert isinstance(v, bool), v  # the binding takes a bool only
        self._visible = v

    def opacity(self):
        return self._opacity

    def setOpacity(self, v):
        self._opacity = v

    def blendingMode(self):
        return self._mode

    def setBlendingMode(self, mode):
        old = self._mode
        self.doc.record("Composition Mode Change", lambda: setattr(self, "_mode", old),
                        lambda: setattr(self, "_mode", mode))

    def inheritAlpha(self):
        return self._inherit

    def setInheritAlpha(self, v):
        self._inherit = v

    def colorLabel(self):
        return self._label

    def setColorLabel(self, v):
        self._label = v

    def locked(self):
        return self._locked

    def setLocked(self, v):
        self._locked = v

    def layerStyleToAsl(self):
        return self._style

    def setLayerStyleFromAsl(self, asl):
        self._style = asl
        return True

    def colorModel(self):
        return self._model

    def colorDepth(self):
        return self._depth

    def colorProfile(self):
        return self._profile

    def setColorSpace(self, model, depth, profile):
        assert all(isinstance(v, str) for v in (model, depth, profile)), (model, depth, profile)
        self._model, self._depth, self._profile = model, depth, profile
        return True

    def bytes_per_pixel(self):
        channels = 1 if self._type in MASKS else 4
        return channels * BYTES_PER_PIXEL[self._depth] // 4

    def bounds(self):
        """The union of the written rectangles (Krita's is the painted extent: close enough for the bridge)."""
        if not self.pixels:
            return Rect(0, 0, 0, 0)
        x0, y0 = min(r[0] for r in self.pixels), min(r[1] for r in self.pixels)
        x1, y1 = max(r[0] + r[2] for r in self.pixels), max(r[1] + r[3] for r in self.pixels)
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def pixelData(self, x, y, w, h):
        bpp = self.bytes_per_pixel()
        out = np.zeros((h, w, bpp), np.uint8)  # unpainted: transparent (all-zero bytes in every depth)
        for (rx, ry, rw, rh), data in self.pixels.items():
            src = np.frombuffer(data, np.uint8).reshape(rh, rw, bpp)
            ax, ay, bx, by = max(x, rx), max(y, ry), min(x + w, rx + rw), min(y + h, ry + rh)
            if ax < bx and ay < by:
                out[ay - y:by - y, ax - x:bx - x] = src[ay - ry:by - ry, ax - rx:bx - rx]
        return out.tobytes()

    def selection(self):
        """SelectionMask.selection(): the mask's pixels over the canvas, one byte each."""
        assert self._type == "selectionmask", self._type
        return Selection(self.pixelData(0, 0, self.doc.w, self.doc.h), self.doc.w, self.doc.h)

    def setPixelData(self, data, x, y, w, h):
        assert len(data) == w * h * self.bytes_per_pixel()
        self.pixels.pop((x, y, w, h), None)
        self.pixels[(x, y, w, h)] = bytes(data)

    def rgba(self, w, h):
        """The node's pixels over the canvas as straight RGBA floats in [0, 1] (masks: their one channel)."""
        dtype, scale = CHANNEL[self._depth]
        values = np.frombuffer(self.pixelData(0, 0, w, h), dtype).reshape(h, w, -1).astype(np.float64) / scale
        if values.shape[2] == 4 and self._depth in ("U8", "U16"):
            values = values[..., [2, 1, 0, 3]]  # BGRA -> RGBA
        return values

    def parentNode(self):
        return self._parent

    def childNodes(self):
        return list(self._children)

    def _attach(self, child, index):
        child._parent = self
        self._children.insert(index, child)
        if self.in_document():  # a node found in a document belongs to it (Krita hands out its image)
            child._adopt(self.doc)

    def _adopt(self, doc):
        self.doc = doc
        for child in self._children:
            child._adopt(doc)

    def _detach(self, child):
        index = self._children.index(child)
        self._children.remove(child)
        child._parent = None
        return index

    def addChildNode(self, child, above):
        if self._type == "grouplayer" and child._type.endswith("mask") and self._parent is None \
                and self is not self.doc.root:
            return True  # Krita: "allowAsChild" refuses masks on a group that has no parent (the child is dropped)
        index = self._children.index(above) + 1 if above is not None else len(self._children)
        self.doc.record("Add Layer", lambda: self._detach(child), lambda: self._attach(child, index))
        return True

    def setChildNodes(self, nodes):
        for child in list(self._children):
            self._detach(child)
        for child in nodes:
            self._attach(child, len(self._children))

    def remove(self):
        parent = self._parent
        index = parent._children.index(self)
        self.doc.record("Remove Layer", lambda: parent._attach(self, index), lambda: parent._detach(self))
        return True

    def duplicate(self):
        copy = Node(self.doc, self._name, self._type, self._model, self._depth)
        copy._visible, copy._opacity, copy._mode, copy._profile = self._visible, self._opacity, self._mode, \
            self._profile
        copy._inherit, copy._label, copy._style, copy.pixels = self._inherit, self._label, self._style, \
            dict(self.pixels)
        copy._off = set(self._off)
        for child in self._children:
            copy._attach(child.duplicate(), len(copy._children))
        return copy

    def in_document(self):
        node = self
        while node._parent is not None:
            node = node._parent
        return node is self.doc.root


class Selection:
    def __init__(self, data, w, h):
        self.data, self.w, self.h = data, w, h

    def pixelData(self, x, y, w, h):
        rows = [self.data[(y + j) * self.w + x:(y + j) * self.w + x + w] for j in range(h)]
        return b"".join(rows)


UNDO_LIMIT = 30  # Krita's default undo stack size (Settings > Configure Krita > General)


class Document:
    def __init__(self, w, h, depth="U8", model="RGBA", name="doc"):
        self.w, self.h, self.depth, self.model, self._name = w, h, depth, model, name
        self.root = Node(self, "root", "grouplayer", model, depth)
        self.active = None
        self.sel = None
        self.refreshed = 0
        self.history = []  # [(text, undo, redo)]
        self.index = 0  # how many history entries are done
        self.closed = False

    def record(self, text, undo, redo):
        """Run redo now and keep the entry, like a command pushed on Krita's undo stack (which keeps at most
        UNDO_LIMIT entries: the oldest goes, and the index stays where it is)."""
        redo()
        del self.history[self.index:]
        self.history.append((text, undo, redo))
        self.index += 1
        if len(self.history) > UNDO_LIMIT:
            del self.history[0]
            self.index -= 1

    def undo(self):
        if self.index > 0:
            self.index -= 1
            self.history[self.index][1]()

    def redo(self):
        if self.index < len(self.history):
            self.history[self.index][2]()
            self.index += 1

    def name(self):
        return self._name

    def fileName(self):
        return ""

    def width(self):
        return self.w

    def height(self):
        return self.h

    def resolution(self):
        return getattr(self, "res", 72.0)

    def colorModel(self):
        return self.model

    def colorDepth(self):
        return self.depth

    def colorProfile(self):
        return getattr(self, "profile", "sRGB")

    def rootNode(self):
        return self.root

    def activeNode(self):
        return self.active

    def setActiveNode(self, node):
        assert node is not None  # libkis dereferences it (tests set `active` directly for "no active layer")
        self.active = node
        view = Krita.instance().window.view
        # libkis: only the document of the current view; activating a layer that is part of a multi-selection
        # keeps that selection (Krita's layer box), activating any other layer selects it alone
        if view.doc is self and not ((node in view.selected or view.sticky(node)) and len(view.selected) > 1):
            view.selected = [node]

    def selection(self):
        return self.sel

    def createNode(self, name, kind):
        return Node(self, name, kind, self.model, self.depth)

    def createGroupLayer(self, name):
        return Node(self, name, "grouplayer", self.model, self.depth)

    def createSelectionMask(self, name):
        return Node(self, name, "selectionmask", self.model, "U8")  # a selection is 8-bit whatever the document

    def refreshProjection(self):
        self.refreshed += 1

    def waitForDone(self):
        pass

    def close(self):
        self.closed = True
        Krita.instance().docs.remove(self)
        return True

    def projection(self):
        """The picture the canvas shows: straight RGBA floats (H, W, 4), composed as Krita composes the visible
        layers (each group apart, then onto what is below it with its opacity, blend mode and masks)."""
        return _compose(self.root, self.w, self.h)


def _compose(group, w, h):
    out = np.zeros((h, w, 4))
    for node in group._children:
        if not node._visible or node._type in MASKS:
            continue
        if node._type == "paintlayer":
            src = node.rgba(w, h)
        elif node._type == "grouplayer":
            src = _compose(node, w, h)
        else:
            raise NotImplementedError(f"mock projection: {node._type}")
        out = _blend(out, _masked(node, src, w, h), node._opacity / 255.0, node._mode, node._inherit)
    return out


def _masked(node, src, w, h):
    """Transparency masks scale the layer's alpha; one with nothing painted hides nothing (as a new one in Krita)."""
    src = src.copy()
    for mask in node._children:
        if mask._type == "transparencymask" and mask._visible and mask.pixels:
            src[..., 3] *= mask.rgba(w, h)[..., 0]
        elif mask._type in ("filtermask", "transformmask") and mask._visible:
            raise NotImplementedError(f"mock projection: {mask._type}")
    return src


def _blend(dst, src, opacity, mode, inherit):
    """W3C compositing of straight RGBA (Krita's KoCompositeOpGenericSC for separable blend modes)."""
    blends = {"normal": lambda cs, cb: cs, "multiply": lambda cs, cb: cs * cb}
    if mode not in blends:
        raise NotImplementedError(f"mock projection: blend mode {mode}")
    a_s, a_b = src[..., 3:] * opacity, dst[..., 3:]
    cs, cb = src[..., :3], dst[..., :3]
    if inherit:  # alpha inheritance: painted only where the layers below in the group are, their alpha kept
        return np.concatenate([cb * (1 - a_s) + blends[mode](cs, cb) * a_s, a_b], axis=2)
    a_o = a_s + a_b * (1 - a_s)
    premul = a_s * (1 - a_b) * cs + a_s * a_b * blends[mode](cs, cb) + (1 - a_s) * a_b * cb
    colour = np.divide(premul, a_o, out=np.zeros_like(premul), where=a_o > 0)
    return np.concatenate([colour, a_o], axis=2)


class Channel:
    def __init__(self, node, name):
        self.node, self._name = node, name

    def name(self):
        return self._name

    def visible(self):
        return self._name not in self.node._off

    def setVisible(self, value):
        (self.node._off.discard if value else self.node._off.add)(self._name)


class View:
    def __init__(self):
        self.doc, self.selected = None, []
        self.shown = True  # False: closed, not yet deleted (File > Quit)
        # Krita 5.1.5: activating a layer for which this says True keeps a multi-selection too (the new peel group
        # while the two layers a Quick Ungroup left are selected)
        self.sticky = lambda node: False

    def document(self):
        return self.doc

    def visible(self):
        return self.shown

    def selectedNodes(self):
        return list(self.selected)


class QWindow:
    """Window.qwindow(): the QMainWindow, only whether it is shown."""

    def __init__(self, view):
        self.view = view

    def isVisible(self):
        return self.view.shown


class Window:
    def __init__(self):
        self.view = View()

    def qwindow(self):
        return QWindow(self.view)

    def activeView(self):
        return self.view if self.view.doc is not None else None

    def addView(self, doc):
        self.view.doc, self.view.selected = doc, [doc.active] if doc.active else []
        Krita.instance().active_doc = doc


class Action:
    TEXTS = {"deselect": "&Deselect", "select_all": "Select &All", "reselect": "&Reselect",
             "invert_selection": "&Invert Selection"}  # Krita's menu labels

    def __init__(self, name):
        self.name = name

    def text(self):
        return self.TEXTS.get(self.name, self.name)

    def trigger(self):
        view = Krita.instance().window.view
        doc = view.doc
        if doc is None:
            return
        if self.name in ("deselect", "select_all"):  # the selection only, one undo entry
            old = doc.sel
            new = None if self.name == "deselect" else Selection(b"\xff" * (doc.w * doc.h), doc.w, doc.h)
            doc.record(self.text().replace("&", ""), lambda: setattr(doc, "sel", old), lambda: setattr(doc, "sel", new))
        elif self.name == "edit_undo":
            doc.undo()
        elif self.name == "edit_redo":
            doc.redo()
        elif self.name == "toggle_layer_visibility" and doc.active is not None:
            nodes, value = list(view.selected), not doc.active._visible
            old = [n._visible for n in nodes]

            def undo():
                for n, v in zip(nodes, old, strict=True):
                    n._visible = v

            doc.record("Property Changes", undo, lambda: [setattr(n, "_visible", value) for n in nodes])
        elif self.name == "quick_ungroup" and doc.active is not None:
            group = doc.active
            parent = group._parent
            if group._type != "grouplayer" or parent is None:
                return
            children, index = list(group._children), parent._children.index(group)

            def redo():
                for child in list(group._children):
                    group._detach(child)
                parent._detach(group)
                for i, child in enumerate(children):
                    parent._attach(child, index + i)

            def undo():
                for child in children:
                    parent._detach(child)
                parent._attach(group, index)
                for child in children:
                    group._attach(child, len(group._children))

            doc.record("Quick Ungroup", undo, redo)


class _Krita:
    def __init__(self):
        self.docs, self.active_doc = [], None
        self.window = Window()

    def activeDocument(self):
        return self.active_doc

    def documents(self):
        return list(self.docs)

    def createDocument(self, w, h, name, model, depth, profile, res):
        # Krita's binding refuses anything but these types (a None raises TypeError there too)
        assert isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0, (w, h)
        assert all(isinstance(v, str) for v in (name, model, depth, profile)), (name, model, depth, profile)
        assert isinstance(res, float), res
        doc = Document(w, h, depth, model, name)
        doc.profile, doc.res = profile, res
        self.docs.append(doc)
        return doc

    def activeWindow(self):
        return self.window

    def action(self, name):
        return Action(name)


class Krita:
    _instance = None

    @classmethod
    def instance(cls):
        if cls._instance is None:
            cls._instance = _Krita()
        return cls._instance

    @classmethod
    def reset(cls):
        cls._instance = None


class FakeUi:
    """The bridge's Qt side: no event loop; the History docker reads the active view's document."""

    def __init__(self):
        self.later_calls = []

    def process_events(self):
        pass

    def later(self, ms, action):
        assert isinstance(ms, int) and ms > 0 and callable(action)  # QTimer.singleShot's types
        self.later_calls.append(action)

    def history(self):
        doc = Krita.instance().window.view.doc
        if doc is None:
            return None
        return ["<empty>", *[text for text, _, _ in doc.history]], doc.index


def module() -> types.ModuleType:
    mod = types.ModuleType("krita")
    mod.Krita, mod.Selection, mod.Document, mod.Node = Krita, Selection, Document, Node
    return mod
