"""A small stand-in for Krita's `krita` module: the parts of the API the plugin's bridge uses.

Nodes keep whole-canvas BGRA (or other depth) byte buffers, so pixel reads/writes at offsets behave
like Krita's. The undo history follows what the real Krita 5.1.5 does (tests/krita checks the real one):
addChildNode, remove and setBlendingMode leave an entry (even on a node not in the document yet),
setChildNodes, setVisible, setOpacity and setPixelData leave none; the toggle_layer_visibility and
quick_ungroup actions act on the active view's selection and leave one entry each. Used for fast unit
tests; the real Krita runs in tests/krita.
"""

import itertools
import types

BYTES_PER_PIXEL = {"U8": 4, "U16": 8, "F16": 8, "F32": 16}
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
        self._model, self._depth = model, depth
        self._children, self._parent, self._visible = [], None, True
        self._id = next(_ids)
        self._opacity, self._mode, self._inherit, self._label, self._locked, self._style = 255, "normal", False, 0, \
            False, ""
        self.pixels = {}  # (x, y, w, h) -> bytes written

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
        return "sRGB"

    def setColorSpace(self, model, depth, profile):
        self._model, self._depth = model, depth
        return True

    def bounds(self):
        if self.pixels:
            x, y, w, h = next(iter(self.pixels))
            return Rect(x, y, w, h)
        return Rect(0, 0, 0, 0)

    def pixelData(self, x, y, w, h):
        return self.pixels.get((x, y, w, h), bytes(w * h * BYTES_PER_PIXEL[self._depth]))

    def setPixelData(self, data, x, y, w, h):
        assert len(data) == w * h * BYTES_PER_PIXEL[self._depth]
        self.pixels = {(x, y, w, h): bytes(data)}

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
        copy._visible, copy._opacity, copy._mode = self._visible, self._opacity, self._mode
        copy._inherit, copy._label, copy._style, copy.pixels = self._inherit, self._label, self._style, \
            dict(self.pixels)
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
        return 72

    def colorModel(self):
        return self.model

    def colorDepth(self):
        return self.depth

    def colorProfile(self):
        return "sRGB"

    def rootNode(self):
        return self.root

    def activeNode(self):
        return self.active

    def setActiveNode(self, node):
        self.active = node
        view = Krita.instance().window.view
        if view.doc is self:  # libkis: only the document of the current view
            view.selected = [node]

    def selection(self):
        return self.sel

    def createNode(self, name, kind):
        return Node(self, name, kind, self.model, self.depth)

    def createGroupLayer(self, name):
        return Node(self, name, "grouplayer", self.model, self.depth)

    def refreshProjection(self):
        self.refreshed += 1

    def waitForDone(self):
        pass

    def close(self):
        self.closed = True
        Krita.instance().docs.remove(self)
        return True

    def projection(self):
        """The visible paint layers, bottom first, as (name, pixels) (what a test compares)."""
        out = []

        def walk(node, shown):
            for n in node._children:
                if n._type == "paintlayer" and shown and n._visible:
                    out.append((n._name, dict(n.pixels)))
                walk(n, shown and n._visible)

        walk(self.root, True)
        return out


class View:
    def __init__(self):
        self.doc, self.selected = None, []

    def document(self):
        return self.doc

    def selectedNodes(self):
        return list(self.selected)


class Window:
    def __init__(self):
        self.view = View()

    def activeView(self):
        return self.view if self.view.doc is not None else None

    def addView(self, doc):
        self.view.doc, self.view.selected = doc, [doc.active] if doc.active else []
        Krita.instance().active_doc = doc


class Action:
    def __init__(self, name):
        self.name = name

    def trigger(self):
        view = Krita.instance().window.view
        doc = view.doc
        if doc is None:
            return
        if self.name == "edit_undo":
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
        doc = Document(w, h, depth, model, name)
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
