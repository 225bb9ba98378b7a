"""Progress reporting shared by stages: a callback(stage, fraction) that may raise JobCancelled."""

from typing import Callable

ProgressFn = Callable[[str, float], None]


def no_progress(stage: str, fraction: float) -> None:
    """Default callback: report nothing, never cancel."""


def sub_progress(progress: ProgressFn, start: float, end: float) -> ProgressFn:
    """Map a stage's own 0..1 onto [start, end] of the whole job."""

    def report(stage: str, fraction: float) -> None:
        progress(stage, start + (end - start) * min(max(fraction, 0.0), 1.0))

    return report
