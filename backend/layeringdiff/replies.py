"""One mapping from an exception to what the user is told: the server's error reply and the command line's
error line and exit code both come from `to_reply`, so a failure reads the same in Krita and in a terminal."""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from layering_protocol import Error, ErrorCode, ProtocolError, clip

from .errors import ML_HINT, InputError, NotAvailable, missing_ml_module

TEXT_CHARS = 1000  # error texts and details in replies: they may quote what a client sent
DETAIL_CHARS = 2000


@dataclass(frozen=True)
class Failure:
    code: str
    text: str
    detail: str = ""

    @property
    def internal(self) -> bool:
        """A fault of this program, not of the input: the log (or LAYERINGDIFF_DEBUG) has the traceback."""
        return self.code == ErrorCode.INTERNAL

    def error(self, job: str | None = None) -> Error:
        return bounded(Error(self.code, self.text, self.detail, job=job))


def incident_logger(log: logging.Logger, what: str) -> Callable[[], str]:
    """An incident id for an internal error, its traceback logged under it (call inside the except block)."""

    def incident() -> str:
        key = uuid.uuid4().hex[:8]
        log.exception("internal error %s %s", key, what)
        return key

    return incident


def to_reply(exc: BaseException, incident: Callable[[], str] | None = None) -> Failure:
    """What a client is told about `exc`. Expected failures carry their own words; anything else is `internal`
    with a log id (`incident` logs the traceback under it) and nothing of the exception in the text."""
    if isinstance(exc, ProtocolError):
        return Failure(exc.code, exc.text, exc.detail)
    if isinstance(exc, InputError):
        return Failure(ErrorCode.BAD_INPUT, exc.text, exc.detail)
    if isinstance(exc, NotAvailable):
        return Failure(ErrorCode.NOT_AVAILABLE, exc.text, exc.detail)
    if isinstance(exc, ModuleNotFoundError) and (module := missing_ml_module(exc)) is not None:
        return Failure(ErrorCode.NOT_AVAILABLE, f"this needs {module}, which is not installed (the ml extra)", ML_HINT)
    if isinstance(exc, MemoryError):
        return Failure(ErrorCode.TOO_LARGE, "not enough memory for this image: try a smaller one",
                       "split a smaller layer or a selection of it, or free memory")
    key = incident() if incident is not None else ""
    where = f" (log id {key})" if key else ""
    if isinstance(exc, ModuleNotFoundError):
        return Failure(ErrorCode.INTERNAL, f"internal error{where}: a module is missing: {exc.name}")
    return Failure(ErrorCode.INTERNAL, f"internal error{where}: the backend's log has the details")


def bounded(message: Any) -> Any:
    """An error's texts may quote what a client sent: cut to a bounded length."""
    if not isinstance(message, Error):
        return message
    return Error(message.code, clip(message.text, TEXT_CHARS), clip(message.detail, DETAIL_CHARS),
                 message.job if message.job is None else clip(message.job, 128))
