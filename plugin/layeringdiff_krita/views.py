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

    def add(self, view: Any) -> None:
        self.views.append(view)
        if self._connection[0]:
            view.set_connection(*self._connection)
        view.set_busy(self._busy)
        if self._message[0]:
            view.show_message(*self._message)
        view.set_undo(self._undo)

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

    def set_undo(self, label: str) -> None:
        """label of the Undo button ("Undo split"), or "" when there is nothing it can take back."""
        self._undo = label
        for view in list(self.views):
            view.set_undo(label)
