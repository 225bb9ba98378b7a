"""What the docker does, without Qt or Krita: buttons -> requests, backend events -> document changes.

The docker (view) and the Krita bridge are passed in, so this runs in tests with fakes. The document is
touched only when a result arrives for a job that is still wanted; errors, cancels and lost backends
leave it as it was.
"""

import os
import shutil
import time
from typing import Any, Callable, List, Optional

from layering_protocol import (
    RELEASE,
    Accepted,
    Cancel,
    Cancelled,
    Error,
    ErrorCode,
    Generate,
    Peel,
    Progress,
    Result,
    Split,
    SplitLayers,
    compare_releases,
    parse_prompt,
    server_release,
)

from .backend_process import BackendProcess
from .connection import BackendClient, SendFailed, State
from .jobs import Job, JobState, NoObjects, Objects, UserError
from .messages import model_hint, starting_status
from .models_panel import GENERATE_MODELS, ModelsPanel
from .naming import colour_codes, mistyped_colour, object_colours
from .own_backend import OwnBackend, SetupState
from .pixels import selection_image, selection_is_empty, selection_is_full, selects_only_transparent
from .ports import Bridge, View
from .settings import Settings
from .setup_run import Bundle, Home

STARTING_UPDATE_S = 1.0  # how often the starting backend's elapsed time is refreshed
# ControlNets of the backend: lines of a sketch layer, or a depth-map layer (and how messages name them)
GUIDE_NAMES = {"canny": "the sketch lines", "depth": "the depth map"}
# how the backend completes the background hidden behind the foreground (its split option "fill"), and what the
# docker calls each: the exemplar-based texture fill is the backend's default
FILLS = {"texture": "Texture (continues the surroundings)", "smooth": "Smooth (soft colours to paint over)",
         "lama": "LaMa (learned; needs the lama model)"}
# the split's matting (the backend's `matting` option; "auto" is the backend's default and is not sent)
MATTINGS = {"auto": "Auto (ViTMatte on a GPU)", "closed-form": "Closed-form (fast, offline)",
            "vitmatte": "ViTMatte (learned; hair and fur)"}
# errors whose detail tells the user what to do (other details, e.g. a log id, stay in the backend's log)
USER_DETAIL_CODES = (ErrorCode.BAD_INPUT, ErrorCode.NOT_AVAILABLE, ErrorCode.IMAGE_TOO_LARGE, ErrorCode.TOO_LARGE,
                     ErrorCode.BUSY, ErrorCode.VERSION_MISMATCH)


class Controller:
    def __init__(self, bridge: Bridge, view: View, settings: Settings,
                 clock: Callable[[], float] = time.monotonic, home: Optional[Home] = None,
                 bundle: Optional[Bundle] = None) -> None:
        self.bridge = bridge
        self.view = view
        self.settings = settings
        self.clock = clock
        # the backend the docker sets up itself in <Krita's data folder>/layeringdiff (None: tests of other things)
        self.own: Optional[OwnBackend] = None
        if home is not None:
            self.own = OwnBackend(view, home, bundle or Bundle(), self.start, self.shutdown, clock)
        self.models = ModelsPanel(view, self._backend_cli, self._models_dir, self._model_fetched, clock,
                                  offload=lambda: self.settings.cpu_offload)
        self.process: Optional[BackendProcess] = None
        self.client: Optional[BackendClient] = None
        self.job: Optional[Job] = None
        self._process_started = 0.0
        self._starting_shown = 0.0
        self._reported_state = ""
        self._in_tick = False

    # ---- backend lifecycle --------------------------------------------------------------------
    def needs_setup(self) -> bool:
        """No backend to start or reach: no Python set, none set up by the docker, no `layeringdiff` on PATH."""
        return (self.own is not None and self.settings.autostart and not self.settings.python
                and not self.own.python() and shutil.which("layeringdiff") is None)

    def start(self) -> None:
        if self.needs_setup():
            assert self.own is not None
            self.own.need()
            return
        if self.own is not None and not self.own.busy and self.own.state != SetupState.UPDATE:
            self.own.set_state(SetupState.READY, "")
        if self.settings.autostart:
            own_python = self.own.python() if self.own is not None else ""
            models_dir = self._models_dir()
            if models_dir:
                os.makedirs(models_dir, exist_ok=True)
            self.process = BackendProcess(self.settings.backend_command(own_python, models_dir))
            self._process_started = self.clock()
            if not self.process.start():
                error, self.process = self.process.start_error, None
                self._set_connection(State.LOST, error + ". Set the Python that has the layeringdiff backend "
                                     "installed in Settings, then Restart.")
                return
            self._starting_shown = self.clock()
            self._set_connection(State.STARTING, starting_status(0, ""))
        else:
            self._connect(self.settings.endpoint)

    def _connect(self, endpoint: str) -> None:
        # keys are for a backend run elsewhere; the child backend listens on loopback without them
        remote = self.process is None
        self.client = BackendClient(endpoint, clock=self.clock,
                                    server_key=self.settings.server_key if remote else "",
                                    client_key=self.settings.client_key if remote else "")
        self.client.connect()
        self._set_connection(self.client.state, self.client.detail)

    def restart(self) -> None:
        self.shutdown()
        self.start()

    def shutdown(self) -> None:
        if self._job_running():  # a result waiting for its document stays: it needs no backend
            self._fail_job("the backend was stopped")
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.process is not None:
            self.process.stop()
            self.process = None

    def _set_connection(self, state: str, text: str) -> None:
        self._reported_state = state
        if self.client is not None and self.client.capabilities is not None and state == State.CONNECTED:
            text += self._compare_versions(self.client.capabilities.server)
            if self.models.wanted:  # the Models list was opened: it follows the backend that answers now
                self.models.refresh()
        elif state == State.INCOMPATIBLE and self._own_process():
            assert self.own is not None
            self.own.offer_update("of another protocol", RELEASE)
        self.view.set_connection(state, text)

    def _backend_cli(self) -> List[str]:
        """The local backend's command line, for the Models list's child processes ([] with none to run)."""
        if not self.settings.autostart or self.needs_setup():
            return []
        return self.settings.cli(self.own.python() if self.own is not None else "")

    def _models_dir(self) -> str:
        """The models folder the backend is started with: the one set, else the docker's own (beside its
        environment), else '' (the Hugging Face cache)."""
        return self.settings.models_dir or (self.own.home.models if self.own is not None else "")

    def _model_fetched(self, key: str) -> None:
        """A new model is only seen by a backend started after it arrived."""
        if self.job is None and self.settings.autostart:
            self.restart()

    def _own_process(self) -> bool:
        """The running backend is the one the docker set up (so the docker can update it)."""
        return self.own is not None and self.process is not None and not self.settings.python \
            and bool(self.own.python())

    def _compare_versions(self, server: str) -> str:
        """The backend's release against the plugin's: an older one of the docker's own gets Update backend."""
        backend = server_release(server)
        order = compare_releases(backend) if backend else -1
        if order == 0:
            return ""
        if order > 0:
            return (f"\nThe backend ({backend}) is newer than this plugin ({RELEASE}): it works while the protocol "
                    "is the same; import the plugin zip of the same release to match it.")
        shown = backend or "of an older release"
        if self._own_process():
            assert self.own is not None
            self.own.offer_update(shown, RELEASE)
            return f"\nThe backend is {shown}, this plugin {RELEASE}: press Update backend."
        return (f"\nThe backend is {shown}, this plugin {RELEASE}: update it (pip install -U layeringdiff, or the "
                "wheel in this plugin's bundle folder) so that both are of the same release.")

    def tick(self) -> None:
        """Called from a Qt timer: never blocks. Krita API calls made while applying a result can spin
        the event loop, which would call tick again: the guard keeps it from re-entering."""
        if self._in_tick:
            return
        self._in_tick = True
        try:
            self._tick()
        finally:
            self._in_tick = False

    def _tick(self) -> None:
        if self.own is not None:
            self.own.tick()
        self.models.tick()
        if self.process is not None and self.client is None:
            if self.process.endpoint:
                self._connect(self.process.endpoint)
            elif self.process.exit_code() is not None:
                self._backend_gone(f"the backend exited (code {self.process.exit_code()}):\n"
                                   f"{self.process.log_tail() or '(it printed nothing)'}")
                return
            else:  # no time limit while it lives: the first start compiles kernels for as long as that takes
                if self.clock() - self._starting_shown >= STARTING_UPDATE_S:
                    self._starting_shown = self.clock()
                    self._set_connection(State.STARTING, starting_status(self.clock() - self._process_started,
                                                                         self.process.phase))
                return
        self._insert_waiting_result()
        if self.client is None:
            return
        for env in self.client.poll():
            self._on_message(env)
        if self._job_running() and self.job is not None and self.client.drops > self.job.drops:
            self._fail_job("lost the backend: its connection dropped while it worked on the job (it stopped, or "
                           "a shared server started again after a crash and forgot the job)")
        self.client.tick()
        if self.process is not None and self.process.exit_code() is not None and self.client.state != State.LOST:
            self.client.state = State.LOST
            self.client.detail = f"the backend exited (code {self.process.exit_code()})"
        if self.client.state != self._reported_state:
            if self.client.state == State.LOST:
                self._backend_gone(self.client.detail)
            else:
                if self._job_running() and self.client.state in (State.REFUSED, State.INCOMPATIBLE):
                    self._fail_job(f"the backend connection failed ({self.client.detail})")
                self._set_connection(self.client.state, self.client.detail)

    def _job_running(self) -> bool:
        """A job the backend still works on (a result waiting for its document needs no backend)."""
        return self.job is not None and self.job.state != JobState.WAITING

    def _backend_gone(self, why: str) -> None:
        if self._job_running():
            self._fail_job(f"lost the backend ({why.splitlines()[0]})")
        if self.client is not None:
            self.client.close()
            self.client.state = State.LOST
        self._set_connection(State.LOST, f"{why}\nClick {self.restart_label()} to try again.")

    def restart_label(self) -> str:
        """What the docker's restart button says: a backend of our own restarts, a remote one reconnects."""
        return "Restart backend" if self.settings.autostart else "Reconnect"

    # ---- user actions -------------------------------------------------------------------------
    def _require_idle_connection(self) -> None:
        if self.job is not None and self.job.state == JobState.WAITING:
            raise UserError(f"The layers of the last {self.job.kind} wait for the document "
                            f"'{self.bridge.document_name(self.job.doc)}': switch to it to insert them, or press "
                            "Cancel to drop them.")
        if self.job is not None:
            raise UserError("A job is running: wait for it or press Cancel.")
        if self.own is not None and self.own.state in (SetupState.NEEDED, SetupState.FINDING, SetupState.RUNNING,
                                                        SetupState.FAILED):
            raise UserError("Set up the backend first: press Set up backend.")
        if self.client is None or not self.client.connected:
            raise UserError("Not connected to the backend yet (see the status line above).")

    def split_selected(self, phrase: str = "", exact_alpha: bool = False, band: int = 0, fill: str = "",
                       matting: str = "") -> None:
        self._guard(lambda: self._split("split", phrase.strip(), exact_alpha, band, fill, matting))

    def peel_next(self, phrase: str = "", exact_alpha: bool = False, band: int = 0, fill: str = "",
                  matting: str = "") -> None:
        self._guard(lambda: self._split("peel", phrase.strip(), exact_alpha, band, fill, matting))

    def split_layers(self, phrase: str = "", exact_alpha: bool = False, band: int = 0, fill: str = "",
                     matting: str = "") -> None:
        """Split into layers: every object of the layer (its selection masks, or a label layer) in one job."""
        self._guard(lambda: self._split_layers(phrase.strip(), exact_alpha, band, fill, matting=matting))

    def split_all(self, phrase: str = "", band: int = 0, fill: str = "", matting: str = "") -> None:
        """Split into all layers: the models find every object of the layer and their order, with no hint."""
        self._guard(lambda: self._split_layers(phrase.strip(), False, band, fill, auto=True, matting=matting))

    def generate(self, prompt: str, width: int, height: int, steps: int, seed: int, negative: str = "",
                 guide: str = "", guide_strength: float = 0.5) -> None:
        self._guard(lambda: self._generate(prompt, width, height, steps, seed, negative, guide, guide_strength))

    def setup_backend(self) -> None:
        """Set up backend, Retry and Update backend: the docker's own environment from the plugin's bundle."""
        if self.own is None:
            return
        if self.job is not None:
            self.view.show_message("A job is running: wait for it or press Cancel.", error=True)
            return
        self.own.start(self.settings.index_url)

    def fetch_model(self, key: str) -> None:
        why = self.models.fetch(key)
        self.view.show_message(why or f"Downloading '{key}': Cancel in the Models list stops it, Download resumes.",
                               error=bool(why))

    def delete_model(self, key: str) -> None:
        why = self.models.delete(key)
        self.view.show_message(why or f"Deleting the files of '{key}' (those another model shares stay).",
                               error=bool(why))

    def remove_backend(self, models: bool = False) -> None:
        """Uninstall the docker's own environment (and its models folder when asked); the plugin stays."""
        if self.own is None:
            return
        # a studio server (or the artist's own Python) is not this environment: it stays connected (before: the
        # connection was closed and splits were refused until a setup)
        in_use = self.settings.autostart and not self.settings.python
        self.view.show_message(self.own.remove(models, in_use=in_use))

    def undo_last(self) -> None:
        """The docker's Undo button: take back the last split, peel or generate in one step."""
        if self.job is not None:
            self.view.show_message("A job is running: wait for it or press Cancel.", error=True)
            return
        try:
            text = self.bridge.undo_last()
        except UserError as exc:
            self.view.show_message(str(exc), error=True)
            return
        self.view.set_undo("")
        self.view.show_message(text)

    def cancel(self) -> None:
        if self.own is not None and self.own.busy:
            self.own.cancel()
            return
        job = self.job
        if job is not None and job.state == JobState.WAITING:  # the result is here: drop it
            self._finish()
            self.view.show_message("The result was dropped: the document is unchanged.")
            return
        if job is None or self.client is None:
            return
        job.state = JobState.CANCELLING
        try:
            self.client.send(Cancel(job.id))
        except SendFailed:  # the connection is gone: the lost backend fails the job, leaving the document alone
            return
        self.view.set_progress("cancelling", -1)

    def _guard(self, action: Callable[[], None]) -> None:
        try:
            action()
        except UserError as exc:
            self.view.show_message(str(exc), error=True)
        except SendFailed as exc:
            self.view.show_message(f"Not sent: {exc}. The document is unchanged; see the status line above.",
                                   error=True)

    def _split(self, kind: str, phrase: str, exact_alpha: bool = False, band: int = 0, fill: str = "",
               matting: str = "") -> None:
        """band: half-width in pixels of the band around the selection's edge that matting decides
        (0: scaled to the object); fill: how the hidden background is completed (FILLS; "": the backend's default)."""
        self._require_idle_connection()
        if colour_codes(phrase) is not None:  # a label layer's order left in the field by Split into layers
            phrase = ""
        doc = self.bridge.active_document()
        layer = self.bridge.read_active_layer(doc)
        mask_bytes = self.bridge.read_selection(doc, layer)
        x, y, w, h = layer.rect
        mask = None
        if mask_bytes is None:
            if not phrase:
                raise UserError("Select the foreground first (any selection tool), or type a foreground phrase.")
        elif selection_is_empty(mask_bytes):
            raise UserError(f"The selection does not cover any part of layer '{layer.name}'.")
        elif selection_is_full(mask_bytes):
            raise UserError("The selection covers the whole layer: select only the foreground object.")
        elif selects_only_transparent(mask_bytes, layer.image):  # its foreground would be empty
            raise UserError(f"The selection covers only transparent pixels of '{layer.name}': nothing of it to "
                            "split there. Select over its painted part, or choose the layer the object is on.")
        else:
            mask = selection_image(mask_bytes, w, h)
        options = self._split_options(exact_alpha and mask is not None, band if mask is not None else 0, fill,
                                      matting if mask is not None else "")  # a phrase's alpha is ViTMatte's already
        note = ""
        index = self.bridge.peel_index(layer) if kind == "peel" else None
        if kind == "peel" and index is None:
            kind, note = "split", f"'{layer.name}' is not a background a split left, so Peel made a group. "
        if kind == "peel":
            message: Any = Peel(layer.image, mask=mask, phrase=phrase or None, index=index, options=options)
        else:
            message = Split(layer.image, mask=mask, phrase=phrase or None, options=options)
        assert self.client is not None
        job_id = self.client.send(message)
        self._begin(Job(job_id, kind, doc, layer, phrase, index or 1, note=note))

    def _split_options(self, exact_alpha: bool, band: int, fill: str, matting: str = "") -> dict:
        # a painted soft selection can be the alpha as it is, instead of a hint refined by matting
        options: dict = {"alpha_mode": "mask"} if exact_alpha else {}
        if band > 0 and not exact_alpha:
            options["band"] = int(band)
        if matting and matting != "auto" and not exact_alpha:  # auto is the default: an older backend knows it
            if matting not in MATTINGS:
                raise UserError(f"Unknown matting '{matting}': choose one of {', '.join(MATTINGS)}.")
            options["matting"] = matting
        if fill:
            if fill not in FILLS:
                raise UserError(f"Unknown fill '{fill}': choose one of {', '.join(FILLS)}.")
            options["fill"] = fill
        return options

    def _split_layers(self, phrase: str, exact_alpha: bool = False, band: int = 0, fill: str = "",
                      auto: bool = False, matting: str = "") -> None:
        self._require_idle_connection()
        assert self.client is not None
        capabilities = self.client.capabilities
        if capabilities is not None and SplitLayers.TYPE not in capabilities.jobs:
            raise UserError(f"The backend ({capabilities.server}) cannot split into layers: update it to the "
                            f"release of this plugin ({RELEASE}).")
        doc = self.bridge.active_document()
        phrases = [p.strip() for p in phrase.split(";") if p.strip()]
        colours = colour_codes(phrase)  # a label layer's colours front first: the artist's order
        twice = next((c for i, c in enumerate(colours or []) if c in (colours or [])[:i]), None)
        if twice:
            raise UserError(f"The colour {twice} is in the phrase field twice: name each label colour once, front "
                            "first (#c8281e; #145adc), or clear the field.")
        odd = mistyped_colour(phrase)
        if odd:  # taken for a phrase, it would name the group, and the order would be the automatic one
            raise UserError(f"'{odd}' is not a colour: write the label layer's colours as #rrggbb, front first "
                            "(#c8281e; #145adc), or clear the field.")
        if auto:  # no hint at all: the backend's models find the objects
            layer = self.bridge.read_active_layer(doc)
            objects = Objects(None, {}, "auto", "the models (SAM's masks, ordered by depth)")
        else:
            try:
                layer, objects = self.bridge.read_objects(doc)
            except NoObjects:
                if colours is not None:
                    active = self.bridge.read_active_layer(doc)
                    if self.bridge.peel_index(active) is not None:  # the background a split left: its own again
                        raise UserError(f"'{active.name}' is the background of a split. To split the layer again in "
                                        "the order of the phrase field, press Undo split first, then Split into "
                                        "layers.") from None
                if not phrases or colours is not None:
                    raise
                # no masks, no label layer: the phrases name the objects, front first, for the models to find
                layer = self.bridge.read_active_layer(doc)
                names = dict(enumerate(phrases, 1))
                objects = Objects(None, names, "labels", f"the phrases {'; '.join(phrases)}")
                phrase = ""  # they name the layers, not the group
        note = ""
        if colours is not None and not auto:
            if not objects.colours:  # an order left from a label layer's split: the masks' own order holds
                note = (f"The colours in the phrase field order a label layer's objects; these came from "
                        f"{objects.source}, ordered top first (drag them in the Layers docker to change it). ")
                colours = None
            phrase = ""  # they order the objects, they do not name the group
        if objects.labels is not None and not objects.colours and not auto and \
                self.bridge.read_selection(doc, layer) is not None:  # Split selected layer's hint, not this one's
            note += ("The selection on the canvas was not used: Split into layers takes its objects from the "
                     "selection masks. ")
        if exact_alpha and objects.soft:  # a label is one value a pixel: the masks' soft edges cannot travel
            note += ("The selection masks' soft edges were cut at half: Split into layers takes each mask as a hard "
                     "edge, so the exact alpha is hard too (for one object's soft selection as its alpha, use Split "
                     "selected layer, then Peel next). ")
        options = self._split_options(exact_alpha, band, fill, matting if objects.labels is not None or auto else "")
        message = SplitLayers(layer.image, objects.labels, order="labels" if auto else objects.order,
                              options=options, auto=auto,
                              phrases=list(objects.names.values()) if objects.labels is None and not auto else [],
                              colours=colours if colours is not None and objects.colours else [])
        job_id = self.client.send(message)
        self._begin(Job(job_id, "split", doc, layer, phrase, 1, objects=objects, note=note))

    def _generate(self, prompt: str, width: int, height: int, steps: int, seed: int, negative: str = "",
                  guide: str = "", guide_strength: float = 0.5) -> None:
        self._require_idle_connection()
        try:
            plain, phrases = parse_prompt(prompt)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if not plain:
            raise UserError("Type a prompt; mark the foreground with brackets, e.g. [a red fox] in the snow.")
        if not phrases:
            raise UserError("Mark the foreground words with brackets, e.g. [a red fox] in the snow.")
        if guide and guide not in GUIDE_NAMES:
            raise UserError(f"Unknown guide '{guide}': choose one of {', '.join(GUIDE_NAMES)}.")
        # a guide is a layer of the active document, and the layers it guides go over it there; without a
        # document the result makes one (only then: a failed Generate leaves nothing behind)
        doc = self.bridge.active_document() if guide else self.bridge.current_document()
        control_image = self.bridge.read_guide(doc, width, height) if guide else None
        dtype, order = self.bridge.document_format(doc)
        options: dict = {"dtype": dtype, "order": order}
        if guide:
            options.update(control=guide, control_scale=float(guide_strength))
        assert self.client is not None
        job_id = self.client.send(Generate(prompt, width=width, height=height, steps=steps, seed=seed,
                                           negative_prompt=negative.strip(), options=options,
                                           control_image=control_image))
        self._begin(Job(job_id, "generate", doc, None, phrases[0], 1, (width, height)))
        warning = self.models.fit_warning([*GENERATE_MODELS, *([f"controlnet-{guide}"] if guide else [])])
        if warning:  # sent all the same: offload or a smaller GPU's own fallback may still carry it
            self.view.show_message(warning)

    def _begin(self, job: Job) -> None:
        if self.client is not None:
            self.client.check_events()  # a drop before this job (a reconnect just now) is no drop under it
        job.drops = self.client.drops if self.client is not None else 0
        self.job = job
        self.view.set_busy(True)
        self.view.set_progress("sending", 0.0)
        self.view.show_message("")

    # ---- backend events -----------------------------------------------------------------------
    def _on_message(self, env: Any) -> None:
        job, msg = self.job, env.message
        if job is None or env.reply_to != job.id:
            if isinstance(msg, Error) and msg.job is None and env.reply_to is None:
                self.view.show_message(f"Backend: {msg.text}", error=True)
            return
        if isinstance(msg, Accepted):
            job.state = JobState.RUNNING if job.state == JobState.SENT else job.state
            ahead = f"queued, {msg.position} job{'s' if msg.position > 1 else ''} ahead" if msg.position else ""
            self.view.set_progress(ahead or "starting", 0.0)
        elif isinstance(msg, Progress):
            job.stage = msg.stage
            if job.state != JobState.CANCELLING:
                self.view.set_progress(msg.stage, msg.fraction)
        elif isinstance(msg, Result):
            if job.state == JobState.CANCELLING:
                self._finish()
                self.view.show_message("Cancelled: the document is unchanged.")
                return
            job.result = msg
            if job.doc is not None and self.bridge.document_is_open(job.doc) and not self.bridge.can_apply(job.doc):
                job.state = JobState.WAITING  # Krita's undoable actions act on the active document only
                self.view.set_progress("waiting for its document", 1.0)
                self.view.show_message(f"The layers are ready: switch to the document "
                                       f"'{self.bridge.document_name(job.doc)}' to insert them (Cancel drops them).")
                return
            self._insert(job)
        elif isinstance(msg, Cancelled):
            self._finish()
            self.view.show_message("Cancelled: the document is unchanged.")
        elif isinstance(msg, Error):
            self._finish()
            # details of these codes tell the user what to do; others (tracebacks) stay in the backend log
            hint = msg.detail if msg.code in USER_DETAIL_CODES else ""
            if msg.code == ErrorCode.NOT_AVAILABLE:
                hint = model_hint(hint, self.settings.models_dir)
            text = msg.text[0].upper() + msg.text[1:] if msg.text else msg.code
            self.view.show_message(f"{text}." + (f" {hint[0].upper() + hint[1:]}." if hint else "")
                                   + " The document is unchanged.", error=True)

    def _insert_waiting_result(self) -> None:
        job = self.job
        if job is None or job.state != JobState.WAITING:
            return
        if not self.bridge.document_is_open(job.doc) or self.bridge.can_apply(job.doc):
            self._insert(job)

    def _insert(self, job: Job) -> None:
        self.view.set_progress("inserting layers", 1.0)
        try:
            self._apply(job, job.result)
        finally:
            self._finish()  # only now: the job counts as running until its layers are in

    def _apply(self, job: Job, result: Result) -> None:
        if job.doc is not None and not self.bridge.document_is_open(job.doc):
            self.view.show_message("The document that started this job was closed, so the result was "
                                   "not inserted anywhere.", error=True)
            return
        try:
            if job.kind == "split":
                text = self.bridge.apply_split(job, result)
            elif job.kind == "peel":
                text = self.bridge.apply_peel(job, result)
            else:
                text = self.bridge.apply_generate(job, result)
        except UserError as exc:
            self.view.show_message(str(exc), error=True)
            return
        self.view.set_undo(f"Undo {job.kind}" if self.bridge.last is not None else "")
        if job.objects is not None and job.objects.colours:  # the order used, where the artist can change it
            self.view.show_order("; ".join(c for c in object_colours(result.info) if c))
        text = job.note + text
        err = result.info.get("recomposition_error")
        seconds = self.clock() - job.started
        if result.info.get("control"):
            text += f", guided by {GUIDE_NAMES.get(result.info['control'], result.info['control'])}"
        fill = f", {result.info['fill']} fill" if result.info.get("fill") else ""
        fill += f", {result.info['matting']} matting" if result.info.get("matting") else ""
        self.view.show_message(text + f" ({seconds:.1f} s{fill}" + (f", max error {err * 255:.2f}/255)"
                                                                    if err is not None else ")"))

    def _finish(self) -> None:
        self.job = None
        self.view.set_busy(False)
        self.view.set_progress("", 0.0)

    def _fail_job(self, why: str) -> None:
        self._finish()
        self.view.show_message(f"The job failed: {why}. The document is unchanged.", error=True)
