"""One backend for all of Krita's windows: the controller talks to a ViewGroup, which forwards to every
window's docker and replays the current state to a docker that joins later."""

from typing import Any, List, Tuple


class ViewGroup:
    def __init__(self) -> None:
        self.views: List[Any] = []
        self._connection: Tuple[str, str] = ("", "")
        self._busy = False
        self._message: Tuple[str, bool] = ("", False)
        self._undo = ""
        self._setup: Tuple[str, str] = ("", "")
        self._setup_progress: Tuple[str, float] = ("", 0.0)
        self._setup_log: List[str] = []
        self._models: Tuple[List[dict], str] = ([], "")
        self._model_progress: dict = {}

    def add(self, view: Any) -> None:
        self.views.append(view)
        if self._connection[0]:
            view.set_connection(*self._connection)
        view.set_busy(self._busy)
        if self._message[0]:
            view.show_message(*self._message)
        view.set_undo(self._undo)
        view.set_setup(*self._setup)
        if self._setup[0] == "running":
            view.set_setup_progress(*self._setup_progress)
        view.add_setup_log(list(self._setup_log), True)
        view.set_models(*self._models)
        for key, text in self._model_progress.items():
            view.set_model_progress(key, text)

    def remove(self, view: Any) -> None:
        if view in self.views:
            self.views.remove(view)

    def set_connection(self, state: str, text: str) -> None:
        self._connection = (state, text)
        for view in list(self.views):
            view.set_connection(state, text)

    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        for view in list(self.views):
            view.set_busy(busy)

    def set_progress(self, stage: str, fraction: float) -> None:
        for view in list(self.views):
            view.set_progress(stage, fraction)

    def show_message(self, text: str, error: bool = False) -> None:
        self._message = (text, error)
        for view in list(self.views):
            view.show_message(text, error)

    def show_order(self, text: str) -> None:
        """A label layer's colours in the order its split used, front first, where the artist can change them."""
        for view in list(self.views):
            view.show_order(text)

    def set_undo(self, label: str) -> None:
        """label of the Undo button ("Undo split"), or "" when there is nothing it can take back."""
        self._undo = label
        for view in list(self.views):
            view.set_undo(label)

    def set_setup(self, state: str, text: str) -> None:
        """The docker's own backend: own_backend.SetupState's value ("" hides the setup panel) and what to say."""
        self._setup = (state, text)
        for view in list(self.views):
            view.set_setup(state, text)

    def set_setup_progress(self, text: str, fraction: float) -> None:
        self._setup_progress = (text, fraction)
        for view in list(self.views):
            view.set_setup_progress(text, fraction)

    def add_setup_log(self, lines: List[str], reset: bool) -> None:
        """Lines of the setup's log (reset: a new setup starts an empty log)."""
        if reset:
            self._setup_log = []
        self._setup_log.extend(lines)
        for view in list(self.views):
            view.add_setup_log(lines, reset)

    def set_models(self, rows: List[dict], note: str = "") -> None:
        """The Models list: one row a model (`layeringdiff models list --json`), and a note when there is none."""
        self._models = (rows, note)
        for view in list(self.views):
            view.set_models(rows, note)

    def set_model_progress(self, key: str, text: str) -> None:
        """A model's download in words ("" when it is over)."""
        if text:
            self._model_progress[key] = text
        else:
            self._model_progress.pop(key, None)
        for view in list(self.views):
            view.set_model_progress(key, text)
