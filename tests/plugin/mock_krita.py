"""A small stand-in for Krita's `krita` module: the parts of the API the plugin's bridge uses.

Nodes keep whole-canvas BGRA (or other depth) byte buffers, so pixel reads/writes at offsets behave
like Krita's. Used for fast unit tests; the real Krita runs in tests/krita.
"""

import types

BYTES_PER_PIXEL = {"U8": 4, "U16": 8, "F16": 8, "F32": 16}


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
        self.pixels = {}  # (x, y, w, h) -> bytes written

    def name(self):
        return self._name

    def type(self):
        return self._type

    def visible(self):
        return self._visible

    def setVisible(self, v):
        self._visible = v

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

    def addChildNode(self, child, above):
        child._parent = self
        index = self._children.index(above) + 1 if above is not None else len(self._children)
        self._children.insert(index, child)
        return True

    def remove(self):
        self._parent._children.remove(self)
        self._parent = None


class Selection:
    def __init__(self, data, w, h):
        self.data, self.w, self.h = data, w, h

    def pixelData(self, x, y, w, h):
        rows = [self.data[(y + j) * self.w + x:(y + j) * self.w + x + w] for j in range(h)]
        return b"".join(rows)


class Document:
    def __init__(self, w, h, depth="U8", model="RGBA"):
        self.w, self.h, self.depth, self.model = w, h, depth, model
        self.root = Node(self, "root", "grouplayer", model, depth)
        self.active = None
        self.sel = None
        self.refreshed = 0

    def width(self):
        return self.w

    def colorModel(self):
        return self.model

    def colorDepth(self):
        return self.depth

    def height(self):
        return self.h

    def rootNode(self):
        return self.root

    def activeNode(self):
        return self.active

    def setActiveNode(self, node):
        self.active = node

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


class _Krita:
    def __init__(self):
        self.docs, self.active_doc = [], None

    def activeDocument(self):
        return self.active_doc

    def documents(self):
        return list(self.docs)

    def createDocument(self, w, h, name, model, depth, profile, res):
        doc = Document(w, h, depth, model)
        self.docs.append(doc)
        return doc

    def activeWindow(self):
        return None


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


def module() -> types.ModuleType:
    mod = types.ModuleType("krita")
    mod.Krita, mod.Selection, mod.Document, mod.Node = Krita, Selection, Document, Node
    return mod
