"""The LayeringDiff docker: widgets only. Behaviour lives in controller.Controller."""

import os
from typing import List

from krita import DockWidget, Krita
from layering_protocol import RELEASE

from .connection import State
from .controller import FILLS, MATTINGS, Controller
from .krita_bridge import KritaBridge
from .messages import status_html
from .qt import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    Qt,
    QTimer,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)
from .settings import Settings
from .setup_run import Bundle, Home
from .views import ViewGroup

DOCKER_ID = "layeringdiff_docker"
TICK_MS = 30
SETTINGS_GROUP = "layeringdiff"
TEXT_LINES = 6  # the status and the message show this many lines, then scroll: the docker keeps a small height
MIN_TEXT_LINES = 3  # ... and at least this many when the docker is squeezed
STATE_COLOURS = {"setting up": "#c90", "not set up": "#888",
                 State.CONNECTED: "#3a3", State.STARTING: "#c90", State.CONNECTING: "#c90", State.LOST: "#d33",
                 State.INCOMPATIBLE: "#d33", State.REFUSED: "#d33", State.CLOSED: "#888"}


def _line(text: str, placeholder: str, name: str = "") -> QLineEdit:
    edit = QLineEdit(text)
    edit.setPlaceholderText(placeholder)
    if name:
        edit.setObjectName(name)
    return edit


def _button(text: str, name: str, slot) -> QPushButton:
    button = QPushButton(text)
    button.setObjectName(name)
    button.clicked.connect(slot)
    return button


def _text_area(label: QLabel, lines: int) -> QScrollArea:
    """A label that wraps, selectable, at most `lines` lines tall (it scrolls beyond): status and message
    stay in view at any docker height, outside the scrolled controls."""
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
    area = QScrollArea()
    area.setWidget(label)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    line = label.fontMetrics().lineSpacing()
    area.setMinimumHeight(MIN_TEXT_LINES * line + 4)
    area.setMaximumHeight(lines * line + 4)
    area.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
    return area


def _show_children(box: QGroupBox, on: bool) -> None:
    """A checkable group box folds: its contents show only while it is checked, and it takes one line when not."""
    for child in box.findChildren(QWidget):
        child.setVisible(on)
    box.setMaximumHeight(16777215 if on else box.fontMetrics().lineSpacing() + 12)


MODEL_COLUMNS = ("Model", "State", "Size", "Enables", "Licence")
_SHARED: dict = {}


def shared_controller(settings: Settings) -> Controller:
    """Every window's docker shares one controller, one connection and one backend process."""
    if "controller" not in _SHARED:
        home = Home(os.path.join(Krita.instance().getAppDataLocation(), "layeringdiff"))
        bridge = KritaBridge()
        controller = Controller(bridge, ViewGroup(), settings, home=home, bundle=Bundle())
        timer = QTimer(QApplication.instance())  # lives as long as Krita, not as one docker
        timer.timeout.connect(controller.tick)
        timer.start(TICK_MS)
        _SHARED.update(controller=controller, timer=timer)
        controller.start()
        closing = Krita.instance().notifier().applicationClosing
        closing.connect(timer.stop)  # no tick while Krita deletes its windows and the docker
        closing.connect(bridge.stop)
        closing.connect(controller.shutdown)
    return _SHARED["controller"]


class LayeringDiffDocker(DockWidget):
    def __init__(self) -> None:
        super().__init__()
        self._undo_label = ""
        self._setup_state = ""
        self._job_busy = False
        self.setWindowTitle(f"LayeringDiff {RELEASE}")
        self.settings = Settings.from_json(Krita.instance().readSetting(SETTINGS_GROUP, "settings", ""))
        root = QWidget(self)
        outer = QVBoxLayout(root)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addLayout(self._status_row())  # fixed at the top: the backend's status
        controls = QWidget()  # the controls scroll when the docker is short
        controls.setObjectName("ld_controls")
        layout = QVBoxLayout(controls)
        layout.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea()
        self.scroll.setObjectName("ld_scroll")
        self.scroll.setWidget(controls)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setMinimumHeight(60)
        outer.addWidget(self.scroll, 1)
        layout.addWidget(self._setup_box())
        self.disabled_reason = QLabel("Split and Generate need a backend: set it up above.")
        self.disabled_reason.setObjectName("ld_disabled_reason")
        self.disabled_reason.setWordWrap(True)
        self.disabled_reason.setVisible(False)
        layout.addWidget(self.disabled_reason)
        self.split_box = self._split_box()
        layout.addWidget(self.split_box)
        self.generate_box = self._generate_box()
        layout.addWidget(self.generate_box)
        layout.addWidget(self._models_box())
        layout.addWidget(self._settings_box())
        layout.addStretch(1)
        # scroll up and down only: as wide as the controls need, so nothing is cut off at the right
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        bar = self.scroll.verticalScrollBar().sizeHint().width()
        self.scroll.setMinimumWidth(controls.minimumSizeHint().width() + bar)
        self._bottom(outer)  # fixed at the bottom: progress, Cancel, Undo and the last message
        self.setWidget(root)

        self.controller = shared_controller(self.settings)
        self.controller.view.add(self)
        self.destroyed.connect(lambda *_: self.controller.view.remove(self))

    # ---- the docker's sections, top to bottom -------------------------------------------------------
    def _status_row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.status = QLabel("not connected")
        self.status.setObjectName("ld_status")
        self.restart_button = _button("Restart backend", "ld_restart", self.on_restart)
        self.restart_button.setVisible(False)
        row.addWidget(_text_area(self.status, TEXT_LINES), 1)
        row.addWidget(self.restart_button, 0, Qt.AlignmentFlag.AlignTop)
        return row

    def _setup_box(self) -> QGroupBox:
        """Set up, retry or update the docker's own backend, with progress, Cancel and the installer's log."""
        box = QGroupBox(f"Backend (plugin {RELEASE})")
        box.setObjectName("ld_setup_box")
        form = QVBoxLayout(box)
        row = QHBoxLayout()
        self.setup_button = _button("Set up backend", "ld_setup", self.on_setup)
        self.setup_cancel = _button("Cancel", "ld_setup_cancel", self.on_cancel)
        self.copy_log = _button("Copy log", "ld_copy_log", self.on_copy_log)
        for widget in (self.setup_button, self.setup_cancel, self.copy_log):
            row.addWidget(widget)
        form.addLayout(row)
        self.setup_text = QLabel("")
        self.setup_text.setObjectName("ld_setup_text")
        self.setup_text.setWordWrap(True)
        self.setup_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addWidget(self.setup_text)
        self.setup_progress = QProgressBar()
        self.setup_progress.setObjectName("ld_setup_progress")
        self.setup_progress.setRange(0, 1000)
        self.setup_progress.setTextVisible(False)
        self.setup_step = QLabel("")
        self.setup_step.setObjectName("ld_setup_step")
        self.setup_step.setWordWrap(True)
        form.addWidget(self.setup_progress)
        form.addWidget(self.setup_step)
        self.setup_log = QPlainTextEdit()
        self.setup_log.setObjectName("ld_setup_log")
        self.setup_log.setReadOnly(True)  # selectable and copyable
        self.setup_log.setMaximumBlockCount(5000)
        self.setup_log.setMaximumHeight(8 * self.setup_log.fontMetrics().lineSpacing() + 10)
        form.addWidget(self.setup_log)
        self.advanced = QGroupBox("Advanced")
        self.advanced.setObjectName("ld_setup_advanced")
        self.advanced.setCheckable(True)
        self.advanced.setChecked(False)
        adv = QFormLayout(self.advanced)
        self.index_url = _line(self.settings.index_url, "package index for the setup (empty: pip's own)",
                               "ld_index_url")
        adv.addRow("Package index", self.index_url)
        self.existing_python = _line(self.settings.python, "a Python with layeringdiff, or the layeringdiff command",
                                     "ld_existing_python")
        adv.addRow("Existing Python", self.existing_python)
        adv.addRow(_button("Use this Python", "ld_use_existing", self.on_use_existing))
        adv.addRow(QLabel("A studio server: fill in its address and keys under Settings below."))
        self.remove_models = QCheckBox("also delete the downloaded models")
        self.remove_models.setObjectName("ld_remove_models")
        adv.addRow(self.remove_models)
        adv.addRow(_button("Remove the backend", "ld_remove_backend", self.on_remove_backend))
        self.advanced.toggled.connect(lambda on: _show_children(self.advanced, on))
        _show_children(self.advanced, False)
        form.addWidget(self.advanced)
        self.setup_box = box
        return box

    def _split_box(self) -> QGroupBox:
        split = QGroupBox("Split")
        split.setObjectName("ld_split_box")
        split_form = QVBoxLayout(split)
        # short enough to show whole in a narrow docker (the 5.3/6.0 fonts cut the longer one): the rest is the tooltip
        self.phrase = _line("", "object, or objects front first: cat; vase", "ld_phrase")
        self.phrase.setToolTip("the new group's name; without a selection, what the models look for. Split into "
                               "layers: several objects front first (cat; vase), or a label layer's colours front "
                               "first (#c8281e; #145adc)")
        split_form.addWidget(self.phrase)
        self.exact_alpha = QCheckBox("Use the selection as the exact alpha (no matting)")
        self.exact_alpha.setObjectName("ld_exact_alpha")
        split_form.addWidget(self.exact_alpha)
        band_row = QHBoxLayout()
        band_row.addWidget(QLabel("Band"))
        self.band = QSpinBox()
        self.band.setObjectName("ld_band")
        self.band.setRange(0, 200)
        self.band.setSpecialValueText("auto")
        self.band.setSuffix(" px")
        self.band.setToolTip("how far either side of the selection's edge matting looks for hair and soft edges "
                             "(auto: 2% of the object's size, more for a feathered selection's soft ramp)")
        band_row.addWidget(self.band, 1)
        band_row.addWidget(QLabel("Matting"))
        self.matting = QComboBox()
        self.matting.setObjectName("ld_matting")
        for value, text in MATTINGS.items():
            self.matting.addItem(text, value)
        self.matting.setToolTip("what decides the soft edge in the band: the closed form (offline, seconds on a "
                                "CPU) or the learned ViTMatte (hair and fur a hard selection cuts; needs the vitmatte "
                                "model, slow without a GPU); auto takes ViTMatte where its weights are and a GPU runs "
                                "it")
        band_row.addWidget(self.matting, 1)
        self.exact_alpha.toggled.connect(lambda on: (self.band.setEnabled(not on), self.matting.setEnabled(not on)))
        split_form.addLayout(band_row)
        fill_row = QHBoxLayout()
        fill_row.addWidget(QLabel("Hidden part"))
        self.fill = QComboBox()
        self.fill.setObjectName("ld_fill")
        for value, text in FILLS.items():
            self.fill.addItem(text, value)
        self.fill.setToolTip("how the background behind the foreground is completed: from the texture around it, "
                             "as a smooth colour to paint over, or by the LaMa model")
        fill_row.addWidget(self.fill, 1)
        split_form.addLayout(fill_row)
        buttons = QHBoxLayout()
        self.split_button = _button("Split selected layer", "ld_split", self.on_split)
        self.peel_button = _button("Peel next", "ld_peel", self.on_peel)
        buttons.addWidget(self.split_button)
        buttons.addWidget(self.peel_button)
        split_form.addLayout(buttons)
        self.layers_button = _button("Split into layers", "ld_split_layers", self.on_split_layers)
        self.layers_button.setToolTip("every object of the layer in one group: one selection mask per object under "
                                      "the layer (the top mask is the front object), or a layer named 'labels' right "
                                      "above it with each object painted in one flat colour (the order is found)")
        self.all_button = _button("Split into all layers", "ld_split_all", self.on_split_all)
        self.all_button.setToolTip("every object the models find in the layer, with no selection: SAM's masks "
                                   "ordered front to back by Depth Anything's depth (needs the sam and "
                                   "depth-anything models: Models below)")
        layers_row = QHBoxLayout()
        layers_row.addWidget(self.layers_button)
        layers_row.addWidget(self.all_button)
        split_form.addLayout(layers_row)
        return split

    def _generate_box(self) -> QGroupBox:
        gen = QGroupBox("Generate")
        gen.setObjectName("ld_generate_box")
        gen_form = QFormLayout(gen)
        self.prompt = QPlainTextEdit()
        self.prompt.setObjectName("ld_prompt")
        self.prompt.setPlaceholderText("[a red fox] sitting in a snowy forest")
        self.prompt.setMaximumHeight(70)
        gen_form.addRow(self.prompt)
        self.negative = _line("", "negative prompt (optional)", "ld_negative")
        gen_form.addRow(self.negative)
        size_row = QHBoxLayout()
        self.width_box, self.height_box = QSpinBox(), QSpinBox()
        for box, name in ((self.width_box, "ld_width"), (self.height_box, "ld_height")):
            box.setRange(256, 2048)
            box.setSingleStep(64)
            box.setValue(1024)
            box.setObjectName(name)
            size_row.addWidget(box)
        size_row.addWidget(_button("Canvas", "ld_canvas_size", self.on_canvas_size))
        gen_form.addRow("Size", size_row)
        guide_row = QHBoxLayout()
        self.guide = QComboBox()
        self.guide.setObjectName("ld_guide")
        self.guide.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)  # narrow
        self.guide.setMinimumContentsLength(8)
        for text, value in (("None", ""), ("Sketch lines of the active layer (canny)", "canny"),
                            ("Depth map in the active layer", "depth")):
            self.guide.addItem(text, value)
        self.guide.setToolTip("ControlNet guide, read from the active layer over the area that will be generated "
                              "(the canvas's top-left corner, at the size above)")
        self.guide_strength = QDoubleSpinBox()
        self.guide_strength.setObjectName("ld_guide_strength")
        self.guide_strength.setRange(0.0, 2.0)
        self.guide_strength.setSingleStep(0.05)
        self.guide_strength.setValue(0.5)
        self.guide_strength.setToolTip("how strongly the guide steers the picture")
        self.guide.currentIndexChanged.connect(lambda *_: self.guide_strength.setEnabled(bool(self.guide_value())))
        self.guide_strength.setEnabled(False)
        guide_row.addWidget(self.guide, 1)
        guide_row.addWidget(self.guide_strength)
        gen_form.addRow("Guide", guide_row)
        self.steps = QSpinBox()
        self.steps.setRange(1, 150)
        self.steps.setValue(30)
        self.steps.setObjectName("ld_steps")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setObjectName("ld_seed")
        gen_form.addRow("Steps", self.steps)
        gen_form.addRow("Seed", self.seed)
        self.generate_button = _button("Generate layered", "ld_generate", self.on_generate)
        gen_form.addRow(self.generate_button)
        return gen

    def _models_box(self) -> QGroupBox:
        """Every model: what it enables, size, licence, state; Download (resumes), Cancel, Delete."""
        box = QGroupBox("Models")
        box.setObjectName("ld_models_box")
        box.setCheckable(True)
        box.setChecked(False)
        form = QVBoxLayout(box)
        self.models_note = QLabel("")
        self.models_note.setObjectName("ld_models_note")
        self.models_note.setWordWrap(True)
        form.addWidget(self.models_note)
        self.models_list = QTreeWidget()
        self.models_list.setObjectName("ld_models")
        self.models_list.setColumnCount(len(MODEL_COLUMNS))
        self.models_list.setHeaderLabels(list(MODEL_COLUMNS))
        self.models_list.setRootIsDecorated(False)
        self.models_list.setMinimumHeight(8 * self.models_list.fontMetrics().lineSpacing())
        form.addWidget(self.models_list)
        row = QHBoxLayout()
        for text, name, slot in (("Download", "ld_model_fetch", self.on_model_fetch),
                                 ("Cancel", "ld_model_cancel", self.on_model_cancel),
                                 ("Delete", "ld_model_delete", self.on_model_delete),
                                 ("Refresh", "ld_models_refresh", self.on_models_refresh)):
            row.addWidget(_button(text, name, slot))
        form.addLayout(row)
        box.toggled.connect(lambda on: (_show_children(box, on), on and self.controller.models.refresh()))
        _show_children(box, False)
        self.models_box = box
        self._model_rows: dict = {}
        return box

    def _settings_box(self) -> QGroupBox:
        self.settings_box = QGroupBox("Settings")
        self.settings_box.setCheckable(True)
        self.settings_box.setChecked(False)
        settings_form = QFormLayout(self.settings_box)
        self.autostart = QCheckBox("Start a local backend automatically")
        self.autostart.setChecked(self.settings.autostart)
        self.cpu_offload = QCheckBox("CPU offload (a GPU too small for every model at once)")
        self.cpu_offload.setObjectName("ld_cpu_offload")
        self.cpu_offload.setChecked(self.settings.cpu_offload)
        self.endpoint = QLineEdit(self.settings.endpoint)
        self.python = _line(self.settings.python, "python with layeringdiff installed (empty: the docker's own)")
        self.model_dir = _line(self.settings.models_dir, "folder with downloaded models (optional)")
        self.server_key = _line(self.settings.server_key, "remote backend: the key `layeringdiff keys init` printed")
        self.client_key = _line(self.settings.client_key, "remote backend: this computer's .key_secret file")
        settings_form.addRow(self.autostart)
        settings_form.addRow("Backend address", self.endpoint)
        settings_form.addRow("Server key", self.server_key)
        key_row = QHBoxLayout()
        key_row.addWidget(self.client_key, 1)
        key_row.addWidget(_button("...", "ld_browse_key", self.on_browse_client_key))
        settings_form.addRow("Client key file", key_row)
        settings_form.addRow("Python", self.python)
        settings_form.addRow("Models", self.model_dir)
        settings_form.addRow(self.cpu_offload)
        settings_form.addRow(_button("Apply and reconnect", "ld_apply", self.on_apply_settings))
        self.settings_box.toggled.connect(lambda on: _show_children(self.settings_box, on))
        _show_children(self.settings_box, False)
        return self.settings_box

    def _bottom(self, outer: QVBoxLayout) -> None:
        progress_row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setObjectName("ld_progress")
        self.progress.setRange(0, 1000)
        self.progress.setFormat("idle")
        self.cancel_button = _button("Cancel", "ld_cancel", self.on_cancel)
        self.cancel_button.setEnabled(False)
        self.undo_button = _button("Undo split", "ld_undo", self.on_undo)
        self.undo_button.setEnabled(False)
        self.undo_button.setToolTip("Takes back the last split, peel or generate in one step, while nothing else "
                                    "has changed the document since")
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        progress_row.addWidget(self.undo_button)
        outer.addLayout(progress_row)
        self.message = QLabel("")
        self.message.setObjectName("ld_message")
        self.message_area = _text_area(self.message, TEXT_LINES)
        outer.addWidget(self.message_area)

    # ---- view interface used by the controller ---------------------------------------------------
    def set_connection(self, state: str, text: str) -> None:
        colour = STATE_COLOURS.get(state, "#888")
        self.status.setText(status_html(state, text, colour))
        controller = getattr(self, "controller", None)  # None while the shared controller is being made
        if controller is not None:
            self.restart_button.setText(controller.restart_label())
        self.restart_button.setVisible(state in (State.LOST, State.INCOMPATIBLE, State.REFUSED))

    def set_busy(self, busy: bool) -> None:
        self._job_busy = busy
        for button in (self.generate_button, self.split_button, self.peel_button, self.layers_button,
                       self.all_button):
            button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.undo_button.setEnabled(not busy and self._undo_label != "")

    def set_setup(self, state: str, text: str) -> None:
        """own_backend.SetupState: "" (ready), needed, finding, running, failed, update."""
        self._setup_state = state
        working = state in ("finding", "running")
        blocked = state in ("needed", "finding", "running", "failed")
        self.setup_text.setText(text)
        self.setup_text.setStyleSheet("color: #d33;" if state == "failed" else "")
        self.setup_text.setVisible(bool(state) and not working)
        self.setup_button.setText({"failed": "Retry setup", "update": "Update backend"}.get(state, "Set up backend"))
        self.setup_button.setVisible(state in ("needed", "failed", "update"))
        self.setup_cancel.setVisible(working)
        self.setup_progress.setVisible(working)
        self.setup_step.setVisible(working)
        has_log = self.setup_log.blockCount() > 1 or bool(self.setup_log.toPlainText())
        self.setup_log.setVisible(working or (state in ("failed", "update") and has_log))
        self.copy_log.setVisible(self.setup_log.isVisibleTo(self.setup_box))
        if working and state == "finding":
            self.setup_progress.setRange(0, 0)
            self.setup_step.setText(text)
        for box in (self.split_box, self.generate_box):
            box.setEnabled(not blocked)
        self.disabled_reason.setVisible(blocked)
        # the fixed bottom row follows the setup too: its progress and Cancel stay in view however short the docker
        self.cancel_button.setEnabled(working or self._job_busy)
        if not working and not self._job_busy:
            self.set_progress("", 0.0)

    def set_setup_progress(self, text: str, fraction: float) -> None:
        self.setup_progress.setRange(0, 1000)
        self.setup_progress.setValue(int(fraction * 1000))
        self.setup_step.setText(text)
        self.set_progress("setting up the backend", fraction)

    def add_setup_log(self, lines: List[str], reset: bool) -> None:
        if reset:
            self.setup_log.clear()
        for line in lines:
            self.setup_log.appendPlainText(line)
        if lines and self._setup_state in ("finding", "running"):
            self.setup_log.setVisible(True)
            self.copy_log.setVisible(True)

    def set_models(self, rows: List[dict], note: str = "") -> None:
        self.models_list.clear()
        self._model_rows = {}
        for row in rows:
            state = row.get("state", "")
            if row.get("needs"):
                state += f" (needs {', '.join(row['needs'])})"
            size = f"{row.get('size_gb', 0):g} GB" if row.get("fetchable", True) else "-"
            item = QTreeWidgetItem([row["model"], state, size, row.get("enables", ""), row.get("licence", "")])
            item.setToolTip(3, row.get("role", ""))
            item.setToolTip(1, row.get("path", "") or row.get("install", ""))
            self.models_list.addTopLevelItem(item)
            self._model_rows[row["model"]] = item
        for column in range(len(MODEL_COLUMNS)):
            self.models_list.resizeColumnToContents(column)
        self.models_note.setText(note)
        self.models_note.setVisible(bool(note) and self.models_box.isChecked())

    def set_model_progress(self, key: str, text: str) -> None:
        item = self._model_rows.get(key)
        if item is not None and text:
            item.setText(1, text)

    def _selected_model(self) -> str:
        item = self.models_list.currentItem()
        if item is None:
            self.show_message("Choose a model in the list first.", error=True)
            return ""
        return item.text(0)

    def on_model_fetch(self) -> None:
        key = self._selected_model()
        if key:
            self.controller.fetch_model(key)

    def on_model_cancel(self) -> None:
        self.controller.models.cancel()

    def on_model_delete(self) -> None:
        key = self._selected_model()
        if key and QMessageBox.question(self, "Delete the model", f"Delete the downloaded files of '{key}'?") \
                == QMessageBox.StandardButton.Yes:
            self.controller.delete_model(key)

    def on_models_refresh(self) -> None:
        self.controller.models.refresh()

    def set_undo(self, label: str) -> None:
        self._undo_label = label
        if label:
            self.undo_button.setText(label)
        self.undo_button.setEnabled(bool(label) and not self.cancel_button.isEnabled())

    def set_progress(self, stage: str, fraction: float) -> None:
        if fraction < 0:
            self.progress.setRange(0, 0)  # busy indicator while cancelling
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(fraction * 1000))
        self.progress.setFormat(f"{stage} %p%" if stage else "idle")

    def show_order(self, text: str) -> None:
        self.phrase.setText(text)

    def show_message(self, text: str, error: bool = False) -> None:
        self.message.setStyleSheet("color: #d33;" if error else "")
        self.message.setText(text)

    # ---- slots ------------------------------------------------------------------------------------
    def fill_value(self) -> str:
        return self.fill.currentData() or ""

    def matting_value(self) -> str:
        return self.matting.currentData() or ""

    def guide_value(self) -> str:
        return self.guide.currentData() or ""

    def on_browse_client_key(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "This computer's key file", self.client_key.text(),
                                              "Client keys (*.key_secret);;All files (*)")
        if path:
            self.client_key.setText(path)

    def on_canvas_size(self) -> None:
        """Generate at the active canvas's size (multiples of 8, within the size limits)."""
        doc = Krita.instance().activeDocument()
        if doc is None:
            self.show_message("Open a document first: its canvas size becomes the size to generate.", error=True)
            return
        for box, value in ((self.width_box, doc.width()), (self.height_box, doc.height())):
            box.setValue(max(box.minimum(), min(box.maximum(), value // 8 * 8)))

    def on_generate(self) -> None:
        self.controller.generate(self.prompt.toPlainText(), self.width_box.value(), self.height_box.value(),
                                 self.steps.value(), self.seed.value(), self.negative.text(), self.guide_value(),
                                 self.guide_strength.value())

    def on_split(self) -> None:
        self.controller.split_selected(self.phrase.text(), self.exact_alpha.isChecked(), self.band.value(),
                                       self.fill_value(), self.matting_value())

    def on_split_layers(self) -> None:
        self.controller.split_layers(self.phrase.text(), self.exact_alpha.isChecked(), self.band.value(),
                                     self.fill_value(), self.matting_value())

    def on_split_all(self) -> None:
        self.controller.split_all(self.phrase.text(), self.band.value(), self.fill_value(), self.matting_value())

    def on_peel(self) -> None:
        self.controller.peel_next(self.phrase.text(), self.exact_alpha.isChecked(), self.band.value(),
                                  self.fill_value(), self.matting_value())

    def on_cancel(self) -> None:
        self.controller.cancel()

    def on_undo(self) -> None:
        self.controller.undo_last()

    def on_setup(self) -> None:
        self.settings.index_url = self.index_url.text().strip()
        Krita.instance().writeSetting(SETTINGS_GROUP, "settings", self.settings.to_json())
        self.controller.setup_backend()

    def on_copy_log(self) -> None:
        QApplication.clipboard().setText(self.setup_log.toPlainText())
        self.show_message("The setup's log is on the clipboard.")

    def on_use_existing(self) -> None:
        self.settings.python = self.existing_python.text().strip()
        self.settings.autostart = True
        self.python.setText(self.settings.python)
        self.autostart.setChecked(True)
        self._save_and_restart()

    def on_remove_backend(self) -> None:
        models = self.remove_models.isChecked()
        what = "the backend's environment" + (" and the downloaded models" if models else "")
        answer = QMessageBox.question(self, "Remove the backend", f"Remove {what}? The plugin stays installed.")
        if answer == QMessageBox.StandardButton.Yes:
            self.controller.remove_backend(models)

    def on_restart(self) -> None:
        self.controller.restart()

    def on_apply_settings(self) -> None:
        self.settings.autostart = self.autostart.isChecked()
        self.settings.endpoint = self.endpoint.text().strip() or self.settings.endpoint
        self.settings.python = self.python.text().strip()
        self.settings.server_key = self.server_key.text().strip()
        self.settings.client_key = self.client_key.text().strip()
        self.settings.models_dir = self.model_dir.text().strip()
        self.settings.cpu_offload = self.cpu_offload.isChecked()
        self._save_and_restart()

    def _save_and_restart(self) -> None:
        self.settings.index_url = self.index_url.text().strip()
        Krita.instance().writeSetting(SETTINGS_GROUP, "settings", self.settings.to_json())
        self.controller.settings = self.settings
        self.controller.restart()

    def canvasChanged(self, canvas) -> None:  # required by DockWidget
        pass
