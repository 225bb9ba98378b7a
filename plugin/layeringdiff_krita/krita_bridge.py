"""The only module that touches the `krita` API: read the active layer and selection, insert results, take
the last operation back.

Layers are only ever added, and every state Krita's own undo and redo reach shows the picture from before or
after the operation. What makes that work (seen in the real Krita 5.1.5):
- New layers are built with their pixels, masks and layer style in a scratch document, and the finished
  group goes in as one copy: one "Add Layer" on the document's history, however many layers it holds.
- The source is hidden with Krita's toggle_layer_visibility action (Node.setVisible leaves no history entry),
  after the group is in: an undo step in between shows both layers, never neither.
- A peel's two layers go in as one temporary group that Krita's quick_ungroup then dissolves into the group
  of the split, so the foregrounds stay side by side in one group.
Krita's actions act on the active view, so results are inserted only while their document is the active one.
"""

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, List, Optional, Tuple

from krita import Krita

from .jobs import Job, LayerPixels, NoObjects, Objects, UserError
from .naming import (
    LABEL_LAYER,
    OBJECT_WORD,
    foreground_number,
    group_name,
    is_background,
    layer_names,
    next_index,
    object_colours,
    object_name,
    stack_names,
    unique,
    with_article,
)
from .pixels import MAX_OBJECTS, UnsupportedFormat, labels_from_masks, layer_format, layer_image, selection_image

ACTIVATE_DELAY_MS = 50
NEW_DOCUMENT_FORMAT = ("RGBA", "U8")
KEPT_MASKS = ("transparencymask", "filtermask", "transformmask")  # act on the group's picture as on the layer's
IGNORED_MASKS = ("selectionmask",)  # a layer's local selection does not change how it looks
FAINTEST_LABEL_ALPHA = 32  # a label layer with no pixel this opaque paints nothing
# actions whose undo entries change only the selection: Undo split takes them back with it (the selection comes back
# as it was before the split)
SELECTION_ACTIONS = ("deselect", "select_all", "reselect", "invert_selection")
UNDO_TRIES = 20  # presses of Edit > Undo per step before the docker's Undo gives up (Krita drops them while busy)
History = Tuple[List[str], int]  # the History docker's entries ("<empty>" first) and the current row


class KritaUi:
    """The Qt side of the real Krita: its event loop, timers and History docker (Qt is imported only here)."""

    def process_events(self) -> None:
        from .qt import QApplication

        QApplication.processEvents()

    def later(self, ms: int, action: Callable[[], Any]) -> None:
        from .qt import QTimer

        QTimer.singleShot(ms, action)

    def history(self) -> Optional[History]:
        """The undo history of the active view's document as the History docker lists it, or None."""
        from .qt import QDockWidget, QListView

        window = Krita.instance().activeWindow()
        if window is None:
            return None
        docks = [d for d in window.qwindow().findChildren(QDockWidget) if d.objectName() == "History"]
        listing = docks[0].findChild(QListView) if docks else None
        if listing is None or listing.model() is None:
            return None
        model = listing.model()
        return [str(model.data(model.index(row, 0))) for row in range(model.rowCount())], listing.currentIndex().row()


@dataclass
class Applied:
    """What the last operation did, to take it back while nothing else has changed the document."""
    doc: Any
    kind: str
    what: str  # "split of 'photo'"
    before: Optional[History]
    after: Optional[History]
    fingerprint: list
    active_id: Any  # the layer that was active before
    steps: int  # the undo entries it made
    shown_again: List[Any] = field(default_factory=list)  # layers hidden without undo (to show again)


class KritaBridge:
    def __init__(self, ui: Any = None) -> None:
        self.ui = ui or KritaUi()
        self.last: Optional[Applied] = None
        self.closing = False  # Krita is quitting: its windows and views are being deleted

    def stop(self) -> None:
        """Krita's applicationClosing: what a timer still has to do is left undone."""
        self.closing = True

    # ---- documents ----------------------------------------------------------------------------
    def active_document(self) -> Any:
        doc = Krita.instance().activeDocument()
        if doc is None:
            raise UserError("Open or create a document first.")
        return doc

    def current_document(self) -> Any:
        """The active document, or None (Generate then makes a new one when its result arrives)."""
        return Krita.instance().activeDocument()

    def document_is_open(self, doc: Any) -> bool:
        return any(d == doc for d in Krita.instance().documents())

    def document_name(self, doc: Any) -> str:
        return doc.name() or os.path.basename(doc.fileName() or "") or "untitled"

    def can_apply(self, doc: Any) -> bool:
        """Whether doc is in the active view: Krita's hide-with-undo and ungroup actions act there."""
        window = Krita.instance().activeWindow()
        view = window.activeView() if window is not None else None
        return view is not None and view.document() == doc

    def document_format(self, doc: Any) -> tuple[str, str]:
        """(dtype, order) that new layers of this document take in setPixelData."""
        try:
            return layer_format(doc.colorModel(), doc.colorDepth()) if doc is not None \
                else layer_format(*NEW_DOCUMENT_FORMAT)
        except UnsupportedFormat as exc:
            raise UserError(str(exc)) from None

    # ---- reading --------------------------------------------------------------------------------
    def active_node(self, doc: Any, strict: bool = True) -> Any:
        """The layer the artist works on: Document.activeNode() is the current layer of the document's first view,
        so with a second view (Window > New View) it is the one selected in the active view when it shows doc.
        Several selected there, none of them the first view's: refused when `strict`, else the first view's."""
        node = doc.activeNode()
        selected = self._selected_nodes(doc)
        if not selected or (node is not None and node.uniqueId() in [n.uniqueId() for n in selected]):
            return node
        if len(selected) > 1:
            if not strict:
                return node
            raise UserError("Several layers are selected in this view: click only the layer to work on in the "
                            "Layers docker.")
        return selected[0]

    def read_active_layer(self, doc: Any, node: Any = None) -> LayerPixels:
        node = node or self.active_node(doc)
        if node is None:
            raise UserError("Choose a layer in the Layers docker first.")
        if node.type().endswith("mask") and node.parentNode() is not None:  # Krita activates a mask just added
            node = node.parentNode()
        if node.type() != "paintlayer":
            hint = ("choose one of the paint layers inside it" if node.type() == "grouplayer"
                    else "Layer > Convert > to Paint Layer makes one from it")
            raise UserError(f"'{node.name()}' is {with_article(node.type())}: choose a paint layer to split ({hint}).")
        for mask in node.childNodes():
            if mask.type() not in KEPT_MASKS + IGNORED_MASKS:
                raise UserError(f"'{node.name()}' has {with_article(mask.type())} ('{mask.name()}'), which the new "
                                "layers cannot carry over: apply it or remove it first (its right-click menu in "
                                "the Layers docker).")
        if getattr(node, "animated", lambda: False)():
            raise UserError(f"'{node.name()}' is animated: its layers would hold this frame only and show it on every "
                            "frame. To split this frame: Select > Select All, Edit > Copy, Edit > Paste into New "
                            "Layer, and split that layer.")
        try:
            layer_format(node.colorModel(), node.colorDepth())
        except UnsupportedFormat as exc:
            raise UserError(str(exc)) from None
        b = node.bounds()  # the painted extent, clipped to the canvas
        x, y = max(b.x(), 0), max(b.y(), 0)
        w = min(b.x() + b.width(), doc.width()) - x
        h = min(b.y() + b.height(), doc.height()) - y
        if w <= 0 or h <= 0:
            raise UserError(f"Layer '{node.name()}' is empty inside the canvas.")
        data = bytes(node.pixelData(x, y, w, h))
        image = layer_image(data, w, h, node.colorModel(), node.colorDepth())
        return LayerPixels(node, (x, y, w, h), image, node.name())

    def read_objects(self, doc: Any) -> Tuple[LayerPixels, Objects]:
        """The active paint layer (or the layer of the active selection mask) and its objects: its selection masks
        (the top one the front object), else the layer right above it named "labels" (past the groups of earlier
        splits), painted in flat colours."""
        node = self.active_node(doc)
        if node is not None and node.type() == "selectionmask" and node.parentNode() is not None:
            node = node.parentNode()
        node = self._below_label_layer(node) or node  # the artist has just painted the labels: it is active
        layer = self.read_active_layer(doc, node)
        x, y, w, h = layer.rect
        masks = [m for m in reversed(layer.node.childNodes()) if m.type() == "selectionmask"]  # top first
        if masks:
            if len(masks) > MAX_OBJECTS:
                raise UserError(f"'{layer.name}' has {len(masks)} selection masks; at most {MAX_OBJECTS} objects.")
            selections = []
            for mask in masks:
                data = bytes(mask.selection().pixelData(x, y, w, h))
                if max(data, default=0) < 128:
                    raise UserError(f"The selection mask '{mask.name()}' selects nothing of '{layer.name}' (or less "
                                    "than half of each pixel): paint its object into it, or delete it.")
                selections.append(data)
            names = {k: object_name(m.name()) for k, m in enumerate(masks, 1)}
            count = f"{len(masks)} selection mask{'s' if len(masks) > 1 else ''}"
            soft = any(data.translate(None, b"\x00\xff") for data in selections)  # a value other than 0 and 255
            return layer, Objects(selection_image(labels_from_masks(selections), w, h), names, "labels", count,
                                  soft=soft)
        labels = self._label_layer(layer)
        if labels is None:
            raise NoObjects(f"Give '{layer.name}' its objects first: a selection mask for each (select an object, "
                            "then right-click the layer > Add > Local Selection; the top mask is the front object), "
                            "or a paint layer named 'labels' right above it with each object painted in one flat "
                            "colour, or their names as phrases, front first: cat; vase; table.")
        data = bytes(labels.pixelData(x, y, w, h))
        if labels.colorDepth() == "U16":  # each channel's high byte (little-endian): flat colours stay flat
            data = data[1::2]
        if max(data[3::4], default=0) < FAINTEST_LABEL_ALPHA:  # the backend's rule (stages/peel.label_codes)
            raise UserError(f"The label layer '{labels.name()}' paints nothing over '{layer.name}'.")
        return layer, Objects(layer_image(data, w, h, "RGBA", "U8"), {}, "auto", f"the label layer '{labels.name()}'",
                              colours=True)

    def _label_layer(self, layer: LayerPixels) -> Any:
        """The layer right above `layer` whose name starts with "label", passing over groups (the groups of its
        earlier splits go right above it), or None; only an RGBA paint layer of 8 or 16 bits (16: a new layer in a
        16-bit document)."""
        _, above = _around(layer.node)  # a layer in a document has a parent, the root at least
        above = next((n for n in above if n.type() != "grouplayer"), None)
        if above is None or not LABEL_LAYER.match(above.name()):
            return None
        if above.type() != "paintlayer" or above.colorModel() != "RGBA" or above.colorDepth() not in ("U8", "U16"):
            raise UserError(f"The label layer '{above.name()}' must be an RGB paint layer of 8 or 16-bit integers (it "
                            f"is {with_article(above.type())}, {above.colorModel()}/{above.colorDepth()}): Layer > "
                            "Convert > Convert Layer Color Space..., RGB/Alpha, 8-bit integer/channel.")
        return above

    def _below_label_layer(self, node: Any) -> Any:
        """The paint layer a label layer (`node`) is right above, passing over groups, else None."""
        if node is None or node.type() != "paintlayer" or not LABEL_LAYER.match(node.name()) or \
                node.parentNode() is None:
            return None
        below = next((n for n in reversed(_around(node)[0]) if n.type() != "grouplayer"), None)
        return below if below is not None and below.type() == "paintlayer" else None

    def read_guide(self, doc: Any, width: int, height: int) -> Any:
        """The active layer over the area the generated layers will cover (the canvas's top-left
        width x height; outside the layer reads as transparent): a sketch or a depth map for ControlNet."""
        node = self.active_node(doc)
        if node is None or node.type() != "paintlayer":
            raise UserError("Choose the guide in the Layers docker: a paint layer with a sketch or a depth map.")
        try:
            layer_format(node.colorModel(), node.colorDepth())
        except UnsupportedFormat as exc:
            raise UserError(str(exc)) from None
        b = node.bounds()
        if b.width() <= 0 or b.height() <= 0 or b.x() >= width or b.y() >= height:
            raise UserError(f"The guide layer '{node.name()}' has nothing inside the {width}x{height} area that "
                            "will be generated (from the canvas's top-left corner).")
        data = bytes(node.pixelData(0, 0, width, height))
        return layer_image(data, width, height, node.colorModel(), node.colorDepth())

    def read_selection(self, doc: Any, layer: LayerPixels) -> Optional[bytes]:
        selection = doc.selection()
        if selection is None:
            return None
        x, y, w, h = layer.rect
        return bytes(selection.pixelData(x, y, w, h))

    def peel_index(self, layer: LayerPixels) -> Optional[int]:
        """The number of the next foreground when the layer is a background a split left, else None."""
        parent = layer.node.parentNode()
        if parent is None or parent.parentNode() is None or not is_background(layer.node.name()):
            return None
        names = [n.name() for n in parent.childNodes()]
        if not any(foreground_number(n) is not None for n in names):
            return None
        return next_index(names)

    # ---- inserting results ----------------------------------------------------------------------
    def apply_split(self, job: Job, result: Any) -> str:
        doc, layer = job.doc, job.layer
        assert layer is not None
        source = self._live(doc, layer.node, layer.name)
        self._unchanged(doc, source, layer)
        layer.name = source.name()  # renamed while the job ran: its group and the message take the name it has
        parent = source.parentNode()
        before, active_id = self._state(doc)
        name = group_name(layer.name, job.phrase, self._all_names(doc))
        if job.objects is not None:
            names, bg_name = self._object_names(job, result)
            layers = [result.foreground, *result.behind]
            stack = self._stack(bg_name, result.background, names, layers)
        else:
            fg_name, bg_name = layer_names(1, job.phrase)
            names, stack = [fg_name], [(bg_name, result.background), (fg_name, result.foreground)]
        x, y, _, _ = layer.rect
        group = self._build(doc, name, stack, x, y, like=source, look=source, outside=source)
        group = self._insert(doc, parent, group, source)
        hide_steps, shown = self._hide(doc, source, group)
        self._activate(doc, self._child(group, bg_name))  # ready for Peel next with a new selection
        self._record(doc, "split", f"split of '{layer.name}'", before, active_id, shown, 1 + hide_steps)
        hidden = (f"'{layer.name}' is hidden, not changed" if group.visible()
                  else f"'{layer.name}' was hidden, so the group is hidden too")
        if job.objects is not None:
            hidden += f"; the objects came from {job.objects.source}" + self._missing(job, result, names)
            if job.objects.colours:
                hidden += (", in the order you gave" if result.info.get("order") == "colours" else
                           _touch_order(len(names), len(result.info.get("unordered") or []))) + \
                    " (the phrase field lists it front first: to change it, Undo split, edit it and split again)"
        return f"Split '{layer.name}' into group '{name}' ({', '.join(names)}, {bg_name}); {hidden}" + \
            self._undo_note(shown) + self._profile_note(doc, source) + self._outside_note(doc, source, bg_name)

    def _profile_note(self, doc: Any, source: Any) -> str:
        """A word where the source has an RGB profile of its own: its layers keep it (_filled), but Krita converts
        each to the document's before blending, so soft edges come out a little unlike the source's own mix (a
        wide-gamut layer in an sRGB document: up to 18-21/255 where the alpha is soft, 1.5% of the values of a scene
        with wide soft edges)."""
        mine, theirs = source.colorProfile(), doc.colorProfile()
        if source.colorModel() != doc.colorModel() or mine == theirs:
            return ""
        return (f"; it has its own colour profile ({mine}), which the new layers keep, but Krita mixes them in the "
                f"document's ({theirs}), so their soft edges may look slightly different: for an exact split, "
                "convert the layer to the document's profile first (Layer > Convert)")

    def _outside_note(self, doc: Any, source: Any, bg_name: str) -> str:
        """A word where the source has pixels past the canvas (moved partly off it, or the canvas cropped): only the
        canvas is split (read_active_layer: the hints are the canvas's, and a cropped photo may be many times its
        size), and the background keeps the rest as it was (_build), so a larger canvas or the Move tool later
        shows all of it."""
        if not outside_strips(source.bounds(), doc.width(), doc.height()):
            return ""
        return f"; its pixels past the canvas are not split: '{bg_name}' keeps them as they were"

    def _missing(self, job: Job, result: Any, names: List[str]) -> str:
        """What a split into layers left out or left empty, in words ("" when nothing): selection masks wholly
        behind the masks above them (no pixel of their own), objects that show nowhere (labels over transparent
        pixels only; the backend's info["empty"])."""
        assert job.objects is not None
        order = list(result.info.get("objects") or [])
        masks = job.objects.labels is not None and not job.objects.colours  # one label value a selection mask
        behind = [job.objects.names[k] for k in sorted(job.objects.names) if k not in order] if masks else []
        empty = [names[order.index(k)] for k in result.info.get("empty") or [] if k in order]
        words = ""
        if behind:
            words += (f" (the mask{'s' if len(behind) > 1 else ''} {', '.join(repr(n) for n in behind)} "
                      f"{'are' if len(behind) > 1 else 'is'} wholly behind the masks above: no layer)")
        if empty:
            words += (f" ({', '.join(repr(n) for n in empty)} {'are' if len(empty) > 1 else 'is'} empty: "
                      f"{'their objects lie' if len(empty) > 1 else 'its object lies'} only over transparent pixels "
                      f"of '{job.layer.name if job.layer else ''}')")
        return words

    def _object_names(self, job: Job, result: Any) -> Tuple[List[str], str]:
        """The layer names of a split into layers, front first: each object by its mask's name, or its colour."""
        assert job.objects is not None
        order = list(result.info.get("objects") or [])
        if len(order) != 1 + len(result.behind):
            raise UserError(f"The backend sent {1 + len(result.behind)} layers for {len(order)} objects; the document "
                            "is unchanged.")
        colours = object_colours(result.info)  # one a label, in the same order
        named = [job.objects.names.get(k) or colours[i] or OBJECT_WORD for i, k in enumerate(order)]
        return stack_names(named)

    def apply_peel(self, job: Job, result: Any) -> str:
        doc, layer = job.doc, job.layer
        assert layer is not None
        old = self._live(doc, layer.node, layer.name)
        self._unchanged(doc, old, layer)
        layer.name = old.name()
        parent = old.parentNode()
        before, active_id = self._state(doc)
        fg_name, bg_name = layer_names(job.index, job.phrase, [n.name() for n in parent.childNodes()])
        x, y, _, _ = layer.rect
        # the old background's opacity, blend mode, masks or style only survive on a group of their own
        keep_group = self._needs_group(old)
        peel = self._build(doc, f"peel {job.index}", [(bg_name, result.background), (fg_name, result.foreground)],
                           x, y, like=old, look=old if keep_group else None, layers_like=None if keep_group else old,
                           outside=old)
        peel = self._insert(doc, parent, peel, old)
        hide_steps, shown = self._hide(doc, old, peel)
        grouped = keep_group or not self._ungroup(doc, peel, old)
        background = self._child(peel, bg_name) if grouped else self._child(parent, bg_name)
        self._activate(doc, background)
        self._record(doc, "peel", f"peel of '{layer.name}'", before, active_id, shown,
                     1 + hide_steps + (0 if grouped else 1))
        where = (f" (in group 'peel {job.index}', which keeps the look of '{layer.name}')" if keep_group else
                 f" (in group 'peel {job.index}': Krita would not ungroup it here, in a locked group?)" if grouped
                 else "")
        return (f"Peeled '{fg_name}' and '{bg_name}' from '{layer.name}'{where}; '{layer.name}' is hidden, "
                "not changed" + self._undo_note(shown) + self._profile_note(doc, old) +
                self._outside_note(doc, old, bg_name))

    def apply_generate(self, job: Job, result: Any) -> str:
        doc = job.doc
        phrases = list(result.info.get("phrases") or [job.phrase or "generated"])
        layers = [result.foreground, *result.behind]  # front to back
        labels = [phrases[i] if i < len(phrases) else "object" for i in range(len(layers))]  # named "2 object"
        names = [f"{i + 1} {label}" for i, label in enumerate(labels)]
        bg_name = f"background {len(layers)}"
        stack = self._stack(bg_name, result.background, names, layers)
        if doc is None:  # made only now, so a failed Generate leaves no empty document behind
            return self._generate_into_new_document(job, stack, bg_name)
        before, active_id = self._state(doc)
        name = unique(job.phrase or "generated", self._all_names(doc))
        group = self._build(doc, name, stack, 0, 0)
        group = self._insert(doc, doc.rootNode(), group, None)  # on top
        self._activate(doc, self._child(group, bg_name))
        self._record(doc, "generate", f"generated group '{name}'", before, active_id, [], 1)
        return f"Generated group '{name}' ({', '.join(names)}, {bg_name})"

    def _generate_into_new_document(self, job: Job, stack: list, bg_name: str) -> str:
        width, height = job.size
        k = Krita.instance()
        doc = k.createDocument(width, height, "LayeringDiff", *NEW_DOCUMENT_FORMAT, "", 300.0)
        name = job.phrase or "generated"
        group = doc.createGroupLayer(name)
        nodes = [self._filled(doc, layer_name, image, 0, 0, None) for layer_name, image in stack]
        group.setChildNodes(nodes)
        doc.rootNode().setChildNodes([group])  # in place of the blank background, before any view: no history
        doc.refreshProjection()
        window = k.activeWindow()
        if window is not None:
            window.addView(doc)
        job.doc = doc
        self._activate(doc, self._child(group, bg_name))
        self.last = None  # closing the new document is its undo
        return f"Generated a new {width}x{height} document with group '{name}' ({', '.join(n for n, _ in stack)})"

    # ---- taking the last operation back ------------------------------------------------------------
    def undo_last(self) -> str:
        """Take back the last split, peel or generate with Krita's own undo, or say why not."""
        op = self.last
        if op is None:
            raise UserError("Nothing to take back: no split, peel or generate since Krita started (or it was "
                            "already taken back).")
        if not self.document_is_open(op.doc):
            self.last = None
            raise UserError(f"The document of the last {op.kind} was closed.")
        if not self.can_apply(op.doc):
            raise UserError(f"Switch to the document '{self.document_name(op.doc)}' first: the {op.kind} was made "
                            "there.")
        now = self.ui.history()
        if op.before is None or op.after is None or now is None:
            raise UserError("Cannot read Krita's undo history (the History docker), so the "
                            f"{op.kind} cannot be taken back safely here: use Edit > Undo.")
        # the steps are counted from what the operation did, not from the history's index: once Krita's undo stack
        # is at its limit, every new entry drops the oldest and the index stays where it is
        (texts, index), (after_texts, after_index) = now, op.after
        steps = op.steps
        same = texts[:after_index + 1] == after_texts[:after_index + 1]
        since = texts[after_index + 1:index + 1] if same else []
        selecting = bool(since) and set(since) <= self._selection_entries()
        if selecting:  # a Deselect after the split changed no layer: taken back too, as it came after
            steps += len(since)
            after_index = index
        if index > after_index or not same:
            newest = texts[index].strip() if 0 <= index < len(texts) else ""
            named = f" ('{newest}')" if newest else ""  # Krita 6 leaves some entries unnamed
            raise UserError(f"The document changed after the {op.kind}{named}, so Undo {op.kind} would take that "
                            "back too: use Edit > Undo or the History docker, step by step.")
        if index <= after_index - steps:  # all of it: Ctrl+Z now would take back what came before (kept: a redo)
            raise UserError(f"The {op.kind} was already taken back with Edit > Undo, all of it: nothing is left to "
                            "take back (Ctrl+Shift+Z brings it back).")
        if index < after_index:
            raise UserError(f"The {op.kind} was already taken back with Edit > Undo ({after_index - index} of "
                            f"{steps} step{'s' if steps != 1 else ''}): press Ctrl+Z to finish, or Ctrl+Shift+Z.")
        if self._fingerprint(op.doc) != op.fingerprint:
            raise UserError(f"Layers changed after the {op.kind} without an undo entry yet (Krita 6 records a "
                            "rename a moment later; or a script), so it cannot be taken back exactly: try again in a "
                            "moment, or use Edit > Undo.")
        taken = self._undo(op.doc, steps, index)
        if taken < steps:  # the rest is left to Ctrl+Z: this Undo's next press says so (index < after_index)
            plural = "s" if steps != 1 else ""
            raise UserError(f"Krita ignored Undo with {steps - taken} of the {op.kind}'s {steps} step{plural} left "
                            "(the image stayed busy): press Ctrl+Z to finish, or Ctrl+Shift+Z.")
        for node in op.shown_again:  # hidden without an undo entry: shown again by hand
            node.setVisible(True)
        active = self._find(op.doc, op.active_id)
        if active is not None:
            self._activate(op.doc, active)
        op.doc.refreshProjection()
        self.last = None
        left = self.ui.history()
        if left is None or left[1] != index - steps:
            raise UserError(f"Krita's undo history did not go back as expected: check the {op.kind} in the History "
                            "docker.")
        also = f" and the {', '.join(dict.fromkeys(since))} after it" if selecting else ""
        return f"Took back the {op.what}{also}: the document is as it was before."

    def _selection_entries(self) -> set:
        """The History docker's entries of Krita's actions that change only the selection, in Krita's language
        (an undo entry is named as its action, less the menu's '&')."""
        texts = set()
        for name in SELECTION_ACTIONS:
            action = Krita.instance().action(name)
            if action is not None and action.text():
                texts.add(action.text().replace("&", ""))
        return texts

    def _undo(self, doc: Any, steps: int, index: int) -> int:
        """Krita's Edit > Undo `steps` times from history row `index`; returns how many steps it took.

        Krita drops an undo that comes while a stroke holds the image (its own idle routines start one after two
        quiet seconds), so a step the History docker's row does not show taken is pressed again, as an artist
        presses Ctrl+Z again."""
        undo = Krita.instance().action("edit_undo")
        for step in range(steps):
            for _ in range(UNDO_TRIES):
                doc.waitForDone()
                undo.trigger()
                doc.waitForDone()
                seen = self.ui.history()
                if seen is None or seen[1] <= index - step - 1:
                    break
            else:
                return step
        return steps

    # ---- building blocks ---------------------------------------------------------------------------
    def _stack(self, bg_name: str, background: Any, names: List[str], layers: List[Any]) -> list:
        """[(name, image)] bottom first, as _build takes them: the background, then the layers from the back."""
        return [(bg_name, background)] + [(names[i], layers[i]) for i in reversed(range(len(layers)))]

    def _build(self, doc: Any, name: str, layers: list, x: int, y: int, like: Any = None, look: Any = None,
               layers_like: Any = None, outside: Any = None) -> Any:
        """A group of paint layers [(name, image)], bottom first, built in a scratch document so that nothing
        lands on doc's history; with look, the group takes that layer's look; with layers_like, the layers take
        its visibility and colour label; with outside (the split layer), the bottom one (the background) takes its
        pixels past the canvas, which were not split. Returns a copy in no document yet (use what _insert
        returns)."""
        k = Krita.instance()
        scratch = k.createDocument(doc.width(), doc.height(), "layeringdiff scratch", doc.colorModel(),
                                   doc.colorDepth(), doc.colorProfile(), doc.resolution())
        try:
            group = scratch.createGroupLayer(name)
            nodes = [self._filled(scratch, layer_name, image, x, y, like) for layer_name, image in layers]
            for strip in outside_strips(outside.bounds(), doc.width(), doc.height()) if outside is not None else []:
                nodes[0].setPixelData(outside.pixelData(*strip), *strip)  # the same colour space (like=outside)
            for node in nodes if layers_like is not None else []:  # hidden before insertion: inserted hidden
                node.setVisible(layers_like.visible())
                node.setColorLabel(layers_like.colorLabel())
            group.setChildNodes(nodes)
            scratch.rootNode().addChildNode(group, None)  # masks only go on a group that has a parent
            if look is not None:
                self._copy_look(look, group)
            return group.duplicate()
        finally:
            scratch.close()

    def _filled(self, doc: Any, name: str, image: Any, x: int, y: int, like: Any) -> Any:
        node = doc.createNode(name, "paintlayer")
        # the source's own colour space, its profile too: the same numbers under the document's profile (a layer
        # converted to a wide-gamut or linear one) would show other colours
        space = (like.colorModel(), like.colorDepth(), like.colorProfile()) if like is not None else None
        if space is not None and (node.colorModel(), node.colorDepth(), node.colorProfile()) != space:
            node.setColorSpace(*space)
        # Krita 5.1 returns None (void), later versions a bool: only False is a refusal
        if node.setPixelData(bytes(image.data), x, y, image.width, image.height) is False:
            raise UserError(f"Krita refused the pixels for layer '{name}'; the document is unchanged.")
        return node

    def _copy_look(self, source: Any, group: Any) -> None:
        """The source's look on the group: its layers inside stay normal at 100%, so the picture is the same."""
        group.setOpacity(source.opacity())
        if source.blendingMode() != group.blendingMode():
            group.setBlendingMode(source.blendingMode())
        group.setVisible(source.visible())
        group.setInheritAlpha(source.inheritAlpha())
        group.setColorLabel(source.colorLabel())
        for mask in source.childNodes():
            if mask.type() in KEPT_MASKS:
                group.addChildNode(mask.duplicate(), None)
        style = source.layerStyleToAsl() if hasattr(source, "layerStyleToAsl") else ""
        if style:
            group.setLayerStyleFromAsl(style)
        off = _channels_off(source)  # Layer Properties > Active Channels
        for channel in group.channels() if off else []:
            if channel.name() in off:
                channel.setVisible(False)

    def _needs_group(self, node: Any) -> bool:
        style = node.layerStyleToAsl() if hasattr(node, "layerStyleToAsl") else ""
        return (node.opacity() != 255 or node.blendingMode() != "normal" or node.inheritAlpha() or bool(style)
                or any(m.type() in KEPT_MASKS for m in node.childNodes()) or bool(_channels_off(node)))

    def _insert(self, doc: Any, parent: Any, node: Any, above: Any) -> Any:
        """Insert a node built elsewhere; returns it as found in doc (the copy's own handle is not doc's)."""
        uid = node.uniqueId()
        parent.addChildNode(node, above)
        doc.waitForDone()
        self.ui.process_events()  # Krita activates a new layer from queued signals: let them run now
        found = self._find(doc, uid)
        if found is None:
            raise UserError("Krita did not insert the new layers; the document is unchanged.")
        return found

    def _hide(self, doc: Any, node: Any, other: Any) -> tuple[int, list]:
        """Hide node with Krita's own action, so undo shows it again. Returns the undo entries made (0 or 1) and the
        layers hidden without one (Krita refused the action), which the docker's Undo shows again by hand."""
        if not node.visible():
            return 0, []
        if self._select_only(doc, node, other):
            Krita.instance().action("toggle_layer_visibility").trigger()
            doc.waitForDone()
            if not node.visible():
                return 1, []
        node.setVisible(False)
        return 0, [node]

    def _ungroup(self, doc: Any, group: Any, other: Any) -> bool:
        """Dissolve group into its parent with Krita's quick_ungroup (one undo entry)."""
        uid = group.uniqueId()
        if not self._select_only(doc, group, other):
            return False
        Krita.instance().action("quick_ungroup").trigger()
        doc.waitForDone()
        self.ui.process_events()
        return self._find(doc, uid) is None

    def _select_only(self, doc: Any, node: Any, other: Any) -> bool:
        """Make node the active and only selected layer of doc's view (actions act on the selection). An active
        layer stays in a multi-selection: another one is activated first, `other`, else one outside the selection
        (Krita 5.1.5 keeps the two layers a Quick Ungroup left selected when either, or the new group, is
        activated: a second peel in a row then hid the old background without an undo entry)."""
        for first in self._activate_first(doc, node, other):
            if first is not None:
                doc.setActiveNode(first)
                self.ui.process_events()
            doc.setActiveNode(node)
            self.ui.process_events()
            if self._selected(doc) == [node.uniqueId()]:
                return True
        return False

    def _activate_first(self, doc: Any, node: Any, other: Any) -> Iterator[Any]:
        """What _select_only activates before node, try by try: nothing, `other`, a layer outside the selection
        (looked for only once the tries before it failed)."""
        yield None
        if other is not None:
            yield other
        outside = self._unselected(doc, node)
        if outside is not None:
            yield outside

    def _unselected(self, doc: Any, node: Any) -> Any:
        """A layer of doc (not a mask, not node) that is not selected in the view, or None."""
        selected = set(self._selected(doc) or [])
        stack = list(doc.rootNode().childNodes())
        while stack:
            candidate = stack.pop()
            uid = candidate.uniqueId()
            if uid not in selected and uid != node.uniqueId() and not candidate.type().endswith("mask"):
                return candidate
            stack.extend(candidate.childNodes())
        return None

    def _selected(self, doc: Any) -> Optional[list]:
        nodes = self._selected_nodes(doc)
        return None if nodes is None else [n.uniqueId() for n in nodes]

    def _selected_nodes(self, doc: Any) -> Optional[list]:
        """The layers selected in the active view, None where it does not show doc."""
        window = Krita.instance().activeWindow()
        view = window.activeView() if window is not None else None
        if view is None or view.document() != doc:
            return None
        return list(view.selectedNodes())

    def _activate(self, doc: Any, node: Any) -> None:
        # Krita activates each newly added layer from queued signals that can run after this call returns,
        # so set the active layer again once the event loop has delivered them.
        if node is None:
            return
        doc.waitForDone()
        doc.setActiveNode(node)
        uid = node.uniqueId()
        try:
            self.ui.later(ACTIVATE_DELAY_MS, lambda: self._activate_again(doc, uid))
        except ImportError:  # outside Krita
            pass

    def _activate_again(self, doc: Any, uid: Any) -> None:
        """_activate's second call, only while Krita is not quitting and doc is in the active view and still holds
        the layer: Document's setActiveNode goes through the active window's view, which Krita deletes when it quits
        or the view is closed (a timer due as Krita quit just after Undo split crashed Krita 5.3 and 6.0 there)."""
        if not self.closing and self.document_is_open(doc) and self._on_screen(doc):
            node = self._find(doc, uid)
            if node is not None:
                doc.setActiveNode(node)

    def _on_screen(self, doc: Any) -> bool:
        """can_apply, and the active window and its view shown: File > Quit closes (hides) them at once and deletes
        them a little later, while they are still Krita's active ones."""
        window = Krita.instance().activeWindow()
        view = window.activeView() if window is not None else None
        return view is not None and view.document() == doc and window.qwindow().isVisible() and view.visible()

    def _live(self, doc: Any, node: Any, name: str) -> Any:
        found = self._find(doc, node.uniqueId())
        if found is None:
            raise UserError(f"The layer '{name}' was deleted while the job ran, so the result was not inserted; "
                            "the document is unchanged.")
        return found

    def _unchanged(self, doc: Any, node: Any, layer: LayerPixels) -> None:
        """Refuse a result whose source layer was painted on (or moved) while the job ran: inserted, it would hide
        the new strokes under a group made from the old pixels."""
        b = node.bounds()
        x, y = max(b.x(), 0), max(b.y(), 0)
        rect = (x, y, min(b.x() + b.width(), doc.width()) - x, min(b.y() + b.height(), doc.height()) - y)
        if rect != tuple(layer.rect) or bytes(node.pixelData(*rect)) != layer.image.data:
            raise UserError(f"'{layer.name}' was changed while the job ran (painted on, moved or filtered), so the "
                            "result was not inserted: it was made from the layer as it was, and would hide your "
                            "changes. The document is as you left it; split again.")

    def _find(self, doc: Any, uid: Any) -> Any:
        stack = list(doc.rootNode().childNodes())
        while stack:
            node = stack.pop()
            if node.uniqueId() == uid:
                return node
            stack.extend(node.childNodes())
        return None

    def _child(self, parent: Any, name: str) -> Any:
        return next((n for n in parent.childNodes() if n.name() == name), None)

    def _all_names(self, doc: Any) -> List[str]:
        names, stack = [], list(doc.rootNode().childNodes())
        while stack:
            node = stack.pop()
            names.append(node.name())
            stack.extend(node.childNodes())
        return names

    def _fingerprint(self, doc: Any) -> list:
        """The layer tree with every property an undo entry could change (pixels and the selection aside)."""
        rows: list = []

        def walk(node: Any, depth: int) -> None:
            for n in node.childNodes():
                if depth == 0 and n.type() == "selectionmask":
                    continue  # the global selection's: Deselect or Select All come and go with it
                rows.append((depth, n.uniqueId(), n.name(), n.type(), n.visible(), n.opacity(), n.blendingMode(),
                             n.inheritAlpha(), n.colorLabel(), n.locked()))
                walk(n, depth + 1)

        walk(doc.rootNode(), 0)
        return rows

    def _state(self, doc: Any) -> tuple:
        active = self.active_node(doc, strict=False)  # a result being inserted: never refused for this
        return self.ui.history() if self.can_apply(doc) else None, active.uniqueId() if active is not None else None

    def _record(self, doc: Any, kind: str, what: str, before: Optional[History], active_id: Any,
                shown_again: list, steps: int) -> None:
        doc.refreshProjection()
        after = self.ui.history() if self.can_apply(doc) else None
        self.last = Applied(doc, kind, what, before, after, self._fingerprint(doc), active_id, steps, shown_again)

    def _undo_note(self, shown_again: list) -> str:
        if shown_again:
            return (". Krita would not hide it with an undo entry (several layers selected?): Undo "
                    f"{self.last.kind if self.last else 'split'} in this docker shows it again")
        return ""


def _touch_order(objects: int, unordered: int) -> str:
    """How the backend ordered a label layer's objects: from where they touch; those touching no other (the
    backend's info["unordered"]) behind, the smaller in front, which no boundary told."""
    if unordered == 0:
        return ", ordered from where they touch"
    if unordered >= objects:
        return ", which touch no other: the smaller in front"
    return (f", ordered from where they touch ({unordered} touching no other "
            f"{'goes' if unordered == 1 else 'go'} behind them, the smaller in front)")


def _channels_off(node: Any) -> List[str]:
    """The names of the channels switched off in the layer's properties (Active Channels): its picture shows without
    them, so the group of its split switches them off too."""
    return [c.name() for c in node.channels() if not c.visible()] if hasattr(node, "channels") else []


def _around(node: Any) -> Tuple[list, list]:
    """The node's siblings below it and above it, bottom first (Krita's order)."""
    siblings = list(node.parentNode().childNodes())
    at = [n.uniqueId() for n in siblings].index(node.uniqueId())
    return siblings[:at], siblings[at + 1:]


def outside_strips(bounds: Any, width: int, height: int) -> List[Tuple[int, int, int, int]]:
    """The rectangles (x, y, w, h) that cover a layer's extent `bounds` (a QRect) past a width x height canvas:
    above it and below it across the extent's width, then left and right of it beside the canvas."""
    x0, y0 = bounds.x(), bounds.y()
    x1, y1 = x0 + bounds.width(), y0 + bounds.height()
    if x1 <= x0 or y1 <= y0:
        return []
    top, bottom = min(max(y0, 0), y1), max(min(y1, height), y0)  # the rows beside the canvas
    strips = [(x0, y0, x1 - x0, top - y0), (x0, bottom, x1 - x0, y1 - bottom)]
    if top < bottom:
        strips += [(x0, top, min(0, x1) - x0, bottom - top), (max(width, x0), top, x1 - max(width, x0), bottom - top)]
    return [s for s in strips if s[2] > 0 and s[3] > 0]
