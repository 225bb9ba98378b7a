"""Krita-free stand-ins for the docker (view) and the Krita bridge, and a controllable clock."""

import time

import numpy as np
from layering_protocol import Image
from layeringdiff.examples import synthetic_composite
from layeringdiff.wire import from_array
from layeringdiff_krita.jobs import LayerPixels, NoObjects, Objects, UserError


class FakeClock:
    """Real monotonic time plus a jump the test controls (to reach heartbeat timeouts at once)."""

    def __init__(self):
        self._offset = 0.0

    def __call__(self):
        return time.monotonic() + self._offset

    def advance(self, seconds):
        self._offset += seconds


class FakeView:
    def __init__(self):
        self.connection = ("", "")
        self.busy = False
        self.progress = []
        self.messages = []
        self.undo = ""
        self.setup = []
        self.setup_progress = []
        self.setup_log = []
        self.models = ([], "")
        self.model_progress = []
        self.orders = []

    def set_connection(self, state, text):
        self.connection = (state, text)

    def set_busy(self, busy):
        self.busy = busy

    def set_progress(self, stage, fraction):
        self.progress.append((stage, fraction))

    def show_message(self, text, error=False):
        self.messages.append((text, error))

    def set_undo(self, label):
        self.undo = label

    def show_order(self, text):
        self.orders.append(text)

    def set_setup(self, state, text):
        self.setup.append((state, text))

    def set_setup_progress(self, text, fraction):
        self.setup_progress.append((text, fraction))

    def set_models(self, rows, note=""):
        self.models = (rows, note)

    def set_model_progress(self, key, text):
        self.model_progress.append((key, text))

    def add_setup_log(self, lines, reset):
        if reset:
            self.setup_log = []
        self.setup_log.extend(lines)

    @property
    def last(self):
        return self.messages[-1] if self.messages else ("", False)


class FakeBridge:
    """One document with one layer made of a synthetic photo composite."""

    def __init__(self, size=96, offset=(10, 20)):
        comp, alpha, _, _ = synthetic_composite(size, size, seed=1)
        rgba = np.dstack([comp, np.ones(alpha.shape, np.float32)])
        self.layer_image = from_array(rgba, "u8", "BGRA")
        self.mask = ((alpha > 0.5) * 255).astype(np.uint8).tobytes()
        self.offset = offset
        self.size = size
        self.doc = object()
        self.open = True
        self.has_document = True
        self.has_layer = True
        self.selection = "mask"  # mask | none | empty | full
        self.applied = []
        self.active = True  # the document is the active view's
        self.peelable = True
        self.no_objects = False
        self.label_layer = False  # read_objects: a label layer in flat colours instead of selection masks
        self.soft_masks = False  # read_objects: the selection masks have soft edges
        self.last = None
        self.undone = 0

    def active_document(self):
        if not self.has_document:
            raise UserError("Open or create a document first.")
        return self.doc

    def document_is_open(self, doc):
        return self.open and doc is self.doc

    def document_name(self, doc):
        return "painting.kra"

    def can_apply(self, doc):
        return self.active

    def current_document(self):
        return self.doc if self.has_document else None

    def read_active_layer(self, doc):
        if not self.has_layer:
            raise UserError("Choose a layer in the Layers docker first.")
        return LayerPixels("node", (*self.offset, self.size, self.size), self.layer_image, "photo")

    def read_selection(self, doc, layer):
        n = self.size * self.size
        return {"mask": self.mask, "none": None, "empty": bytes(n), "full": b"\xff" * n}[self.selection]

    def read_objects(self, doc):
        """Two objects from selection masks: the synthetic object (front) and a square in a corner (behind); with
        `no_objects`, none (no masks, no label layer)."""
        layer = self.read_active_layer(doc)
        if self.no_objects:
            raise NoObjects("Give 'photo' its objects first")
        labels = (np.frombuffer(self.mask, np.uint8).reshape(self.size, self.size) > 127).astype(np.uint8)
        corner = labels[-24:, -24:]
        corner[corner == 0] = 2
        if self.label_layer:  # the same two objects painted in flat colours on a label layer: red the cat
            paint = np.zeros((self.size, self.size, 4), np.uint8)
            paint[labels == 1] = (30, 40, 200, 255)  # BGRA: #c8281e
            paint[labels == 2] = (220, 90, 20, 255)  # #145adc
            return layer, Objects(Image(self.size, self.size, "BGRA", "u8", paint.tobytes()), {}, "auto",
                                  "the label layer 'labels'", colours=True)
        objects = Objects(Image(self.size, self.size, "L", "u8", labels.tobytes()), {1: "cat", 2: "box"}, "labels",
                          "2 selection masks", soft=self.soft_masks)
        return layer, objects

    def peel_index(self, layer):
        return 2 if self.peelable else None

    def read_guide(self, doc, w, h):
        comp, _, _, _ = synthetic_composite(h, w, seed=2)
        return from_array(comp, "u8", "RGB")

    def document_format(self, doc):
        return "u8", "BGRA"

    def apply_split(self, job, result):
        self.applied.append(("split", job, result))
        self.last = job.kind
        return "split applied"

    def apply_peel(self, job, result):
        self.applied.append(("peel", job, result))
        self.last = job.kind
        return "peel applied"

    def apply_generate(self, job, result):
        self.applied.append(("generate", job, result))
        self.last = job.kind
        return "generate applied"

    def undo_last(self):
        if self.last is None:
            raise UserError("Nothing to take back")
        self.undone += 1
        self.last = None
        return "taken back"
