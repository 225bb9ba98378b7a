"""The only module that touches the `krita` API: read the active layer and selection, insert results.

Layers are only ever added: Split hides the source layer and adds a group above it; Peel adds the next
foreground and background inside the same group and hides the peeled background.
"""

from typing import Any, Optional

from krita import Krita

from .controller import Job, LayerPixels, UserError
from .pixels import UnsupportedFormat, layer_format, layer_image

ACTIVATE_DELAY_MS = 50


class KritaBridge:
    def active_document(self) -> Any:
        doc = Krita.instance().activeDocument()
        if doc is None:
            raise UserError("Open or create a document first.")
        return doc

    def document_is_open(self, doc: Any) -> bool:
        return any(d == doc for d in Krita.instance().documents())

    def read_active_layer(self, doc: Any) -> LayerPixels:
        node = doc.activeNode()
        if node is None:
            raise UserError("Choose a layer in the Layers docker first.")
        if node.type() != "paintlayer":
            raise UserError(f"'{node.name()}' is a {node.type()}: choose a paint layer to split.")
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

    def read_guide(self, doc: Any, width: int, height: int) -> Any:
        """The active layer over the area the generated layers will cover (the canvas's top-left
        width x height; outside the layer reads as transparent): a sketch or a depth map for ControlNet."""
        node = doc.activeNode()
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

    def peel_index(self, layer: LayerPixels) -> int:
        parent = layer.node.parentNode()
        siblings = parent.childNodes() if parent is not None else []
        return 1 + sum(1 for n in siblings if n.name().endswith(" foreground") or " foreground " in n.name())

    def document_format(self, doc: Any) -> tuple[str, str]:
        """(dtype, order) that new layers of this document take in setPixelData."""
        try:
            return layer_format(doc.colorModel(), doc.colorDepth())
        except UnsupportedFormat as exc:
            raise UserError(str(exc)) from None

    def document_for_generate(self, width: int, height: int) -> Any:
        doc = Krita.instance().activeDocument()
        if doc is not None:
            return doc
        doc = Krita.instance().createDocument(width, height, "LayeringDiff", "RGBA", "U8", "", 300.0)
        window = Krita.instance().activeWindow()
        if window is not None:
            window.addView(doc)
        return doc

    # ---- inserting results ----------------------------------------------------------------------
    def _paint_layer(self, doc: Any, name: str, like: Optional[Any]) -> Any:
        node = doc.createNode(name, "paintlayer")
        if like is not None and (node.colorModel(), node.colorDepth()) != (like.colorModel(), like.colorDepth()):
            node.setColorSpace(like.colorModel(), like.colorDepth(), like.colorProfile())
        return node

    def _activate(self, doc: Any, node: Any) -> None:
        # Krita activates each newly added layer from queued signals that run after this call returns,
        # so set the active layer again once the event loop has delivered them.
        doc.waitForDone()
        doc.setActiveNode(node)
        try:
            from .qt import QTimer
        except ImportError:  # outside Krita (tests with a mock krita and no Qt binding)
            return
        QTimer.singleShot(ACTIVATE_DELAY_MS, lambda: self.document_is_open(doc) and doc.setActiveNode(node))

    def _fill_or_undo(self, added: list, fills: list, x: int, y: int) -> None:
        """Pixels can only be set once the layers are in the document; if Krita refuses them, take out
        the layers just added so the document is as it was."""
        for node, image in fills:
            # Krita 5.1 returns None (void), later versions a bool: only False is a refusal
            if node.setPixelData(bytes(image.data), x, y, image.width, image.height) is False:
                for new in added:
                    new.remove()
                raise UserError(f"Krita refused the pixels for layer '{node.name()}'; the document is unchanged.")

    def apply_split(self, job: Job, result: Any) -> str:
        doc, layer = job.doc, job.layer
        assert layer is not None
        source = layer.node
        x, y, _, _ = layer.rect
        name = job.phrase or layer.name
        group = doc.createGroupLayer(name)
        background = self._paint_layer(doc, f"{name} background", source)
        foreground = self._paint_layer(doc, f"{name} foreground", source)
        parent = source.parentNode() or doc.rootNode()
        parent.addChildNode(group, source)
        group.addChildNode(background, None)
        group.addChildNode(foreground, background)
        self._fill_or_undo([group], [(background, result.background), (foreground, result.foreground)], x, y)
        source.setVisible(False)
        self._activate(doc, background)  # ready for Peel next with a new selection
        doc.refreshProjection()
        return f"Split '{layer.name}' into group '{name}'; the original layer is hidden, not changed"

    def apply_peel(self, job: Job, result: Any) -> str:
        doc, layer = job.doc, job.layer
        assert layer is not None
        old_background = layer.node
        x, y, _, _ = layer.rect
        name = job.phrase or f"layer {job.index}"
        parent = old_background.parentNode() or doc.rootNode()
        background = self._paint_layer(doc, f"{name} background", old_background)
        foreground = self._paint_layer(doc, f"{name} foreground {job.index}", old_background)
        parent.addChildNode(background, old_background)
        parent.addChildNode(foreground, background)
        self._fill_or_undo([background, foreground], [(background, result.background),
                                                      (foreground, result.foreground)], x, y)
        old_background.setVisible(False)
        self._activate(doc, background)
        doc.refreshProjection()
        return f"Peeled foreground {job.index} from '{layer.name}' (hidden, not changed)"

    def apply_generate(self, job: Job, result: Any) -> str:
        doc = job.doc
        name = job.phrase or "generated"
        phrases = list(result.info.get("phrases") or [name])
        group = doc.createGroupLayer(name)
        background = self._paint_layer(doc, f"{name} background", None)
        doc.rootNode().addChildNode(group, None)
        group.addChildNode(background, None)
        fills = [(background, result.background)]
        below = background
        # foregrounds front to back: [foreground, *behind]; add from the back so the front one ends on top
        layers = [result.foreground, *result.behind]
        for i in reversed(range(len(layers))):
            label = phrases[i] if i < len(phrases) else f"{name} {i + 1}"
            node = self._paint_layer(doc, f"{label} foreground", None)
            group.addChildNode(node, below)
            fills.append((node, layers[i]))
            below = node
        self._fill_or_undo([group], fills, 0, 0)
        self._activate(doc, background)
        doc.refreshProjection()
        return f"Generated '{name}' as a foreground and a background layer"
