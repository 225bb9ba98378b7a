"""The docker's own backend: set it up, update it, remove it, without a terminal and without blocking Krita.

Krita-free: the view and the callbacks are passed in. States the view shows (SetupState): the setup panel for
NEEDED, FINDING, RUNNING and FAILED (the split controls are disabled then, with the reason), the update offer for
UPDATE, nothing for READY.
"""

import threading
import time
from enum import Enum
from pathlib import Path
from typing import Callable, List, Optional

from .ports import View
from .setup_run import Bundle, Finder, Home, SetupRun, setup_command, setup_script_module

VIEW_UPDATE_S = 0.25  # progress and log refresh in the docker
UV_FOLDER = "uv"  # <home>/uv/uv[.exe]: a uv the user put there is found too


class SetupState(str, Enum):
    READY = ""  # a backend is configured or set up: no panel
    NEEDED = "needed"
    FINDING = "finding"  # looking for a Python
    RUNNING = "running"
    FAILED = "failed"
    UPDATE = "update"  # the backend is older than the plugin: offer Update backend


SETTING_UP = "setting up"  # what the docker's status line says (its colour: docker.STATE_COLOURS)
NOT_SET_UP = "not set up"
NEEDED_TEXT = ("No backend is set up yet. Set up backend installs it in a private Python environment (about 0.3 GB "
               "to download, 1.2 GB of disk, a few minutes) in {home}.")


class OwnBackend:
    def __init__(self, view: View, home: Home, bundle: Bundle, on_ready: Callable[[], None],
                 on_stop: Callable[[], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.view = view
        self.home = home
        self.bundle = bundle
        self.on_ready = on_ready  # start the backend that the setup made
        self.on_stop = on_stop  # stop the running backend (an update or a removal replaces its files)
        self.clock = clock
        self.state = SetupState.READY
        self.finder: Optional[Finder] = None
        self.run: Optional[SetupRun] = None
        self.index_url = ""
        self._shown = 0.0
        self._log_sent = 0
        self.removing: Optional[threading.Thread] = None
        self.remove_error = ""

    def python(self) -> str:
        return self.home.python()

    def set_state(self, state: SetupState, text: str) -> None:
        self.state = state
        self.view.set_setup(state.value, text)
        if state in (SetupState.NEEDED, SetupState.FAILED):
            self.view.set_connection(NOT_SET_UP, "press Set up backend below" if state == SetupState.NEEDED
                                     else "the setup did not finish: see below, then Retry setup")
        elif state == SetupState.FINDING:
            self.view.set_connection(SETTING_UP, text)

    def need(self) -> None:
        if not self.bundle.usable():
            self.set_state(SetupState.NEEDED, "No backend is configured, and this copy of the plugin has no bundled "
                                              "backend to set up (a developer install): choose a Python that has "
                                              "layeringdiff installed, or a studio server, under Advanced.")
            return
        self.set_state(SetupState.NEEDED, NEEDED_TEXT.format(home=self.home.folder))

    @property
    def busy(self) -> bool:
        return self.state in (SetupState.FINDING, SetupState.RUNNING) or self.removing is not None

    def start(self, index_url: str = "") -> None:
        """Set up backend, Retry and Update backend: find a Python, then run the setup script with it."""
        if self.busy:
            return
        if not self.bundle.usable():
            self.need()
            return
        self.on_stop()
        self.index_url = index_url
        self.view.add_setup_log([], True)
        self._log_sent = 0
        self.finder = Finder([f"{self.home.folder}/{UV_FOLDER}"])
        self.set_state(SetupState.FINDING, "looking for a Python 3.10 or later...")

    def cancel(self) -> None:
        if self.run is not None and not self.run.finished:
            self.run.cancel()
        elif self.state == SetupState.FINDING:
            self.finder = None
            if self.home.python():  # an update cancelled before it began: the backend as it was
                self.kept("The update was cancelled.", error=False)
            else:
                self.set_state(SetupState.FAILED, "The setup was cancelled; press Set up backend to start it again.")

    def tick(self) -> None:
        if self.removing is not None and not self.removing.is_alive():
            self.removing = None
            if self.remove_error:
                self.view.show_message(f"The backend was not removed completely: {self.remove_error}", error=True)
                self.remove_error = ""
        if self.state == SetupState.FINDING and self.finder is not None and self.finder.done:
            finder, self.finder = self.finder, None
            if finder.found is None:
                self.view.add_setup_log([f"  tried {t}" for t in finder.tried], False)
                if self.home.python():  # nothing to update with, nothing changed
                    self.kept(finder.error, error=True)
                else:
                    self.set_state(SetupState.FAILED, finder.error)
                return
            self.view.add_setup_log([f"using {finder.found.how}", *[f"  tried {t}" for t in finder.found.tried]],
                                    False)
            self.run = SetupRun(setup_command(finder.found, self.bundle, self.home, self.index_url), self.clock)
            self.set_state(SetupState.RUNNING, "starting the setup")
            self.run.start()
        run = self.run
        if run is None or self.state != SetupState.RUNNING:
            return
        lines, self._log_sent = run.lines_since(self._log_sent)
        if lines:
            self.view.add_setup_log(lines, False)
        if run.finished:
            self.run = None
            if run.succeeded:
                self.set_state(SetupState.READY, "")
                self.view.show_message(f"The backend is set up ({run.result.get('release', '')}, "
                                       f"{run.result.get('python', '')}).")
                self.on_ready()
            elif self.home.python() and not (run.cancelled and run.changed_environment()):
                # an update that stopped before it changed anything: the backend as it was
                self.kept("The update was cancelled." if run.cancelled else run.failure(), error=not run.cancelled)
            else:
                if self.home.python():  # cancelled just as pip began installing: not known to work any more
                    Path(self.home.state_file).unlink(missing_ok=True)
                self.set_state(SetupState.FAILED, run.failure())
            return
        if self.clock() - self._shown >= VIEW_UPDATE_S:
            self._shown = self.clock()
            text = run.text()
            self.view.set_setup_progress(text, run.fraction())
            self.view.set_connection(SETTING_UP, text)  # the status line at the top: always in view

    def kept(self, what: str, error: bool) -> None:
        """An update that failed or was cancelled and left the earlier backend working (the setup takes
        backend.json away only once it starts changing the environment): said, that backend started again, the
        update offered again."""
        release = self.home.state().get("release", "")
        text = f"{what} The backend you had ({release}) is unchanged and runs again; Update backend tries again."
        self.view.show_message(text, error=error)
        self.set_state(SetupState.UPDATE, text)
        self.on_ready()

    def offer_update(self, backend: str, plugin: str) -> None:
        self.set_state(SetupState.UPDATE, f"The backend is {backend}, this plugin {plugin}: Update backend installs "
                                          "the plugin's own backend (a minute or two; settings and models stay).")

    def remove(self, models: bool, in_use: bool = True) -> str:
        """Uninstall: stop the backend, then delete the environment (and the models when asked) in a thread.
        `in_use`: the backend the docker runs is this environment's; where it is not (a studio server, or a Python
        of the artist's own), that one is left running and connected, and no setup is asked for."""
        if self.busy:
            return "Wait for the setup to finish or cancel it first."
        if in_use:
            self.on_stop()
        folders: List[str] = [self.home.env] + ([self.home.models] if models else [])
        state_file = self.home.state_file

        def work() -> None:
            try:
                Path(state_file).unlink(missing_ok=True)
                remove_tree = setup_script_module(self.bundle).remove_tree  # the setup's own, for its own files
                for folder in folders:
                    remove_tree(Path(folder))
            except OSError as exc:  # a file still in use (Windows): said, and the next removal tries again
                self.remove_error = str(exc)

        self.removing = threading.Thread(target=work, daemon=True)
        self.removing.start()
        if not in_use:
            return (f"Removing {' and '.join(folders)}; the backend you use now stays connected, and the plugin "
                    "stays (remove it in Krita's Python Plugin Manager).")
        self.need()
        return f"Removing {' and '.join(folders)}; the plugin stays (remove it in Krita's Python Plugin Manager)."
