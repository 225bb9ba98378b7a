"""Job runners the tests give the server's workers in place of the pipeline (ServerConfig.job_runner): they run
in the worker processes, so each is a plain module-level function named "tests.integration.runners:NAME"."""

import os
import time
from typing import Any

import numpy as np

HELD_S = 60.0


def held(message: Any, progress: Any, models: Any) -> Any:
    """A job that runs until it is cancelled: progress() raises then."""
    deadline = time.monotonic() + HELD_S
    while time.monotonic() < deadline:
        progress("held", 0.5)
        time.sleep(0.01)
    raise AssertionError("never cancelled")


def stuck(message: Any, progress: Any, models: Any) -> Any:
    """One long call that never looks at cancel (a native step that cannot be interrupted)."""
    progress("stuck", 0.1)
    time.sleep(600)
    raise AssertionError("never stopped")


def broken(message: Any, progress: Any, models: Any) -> Any:
    raise RuntimeError("secret internal detail")


def greedy(message: Any, progress: Any, models: Any) -> Any:
    """8 MB more every 10 ms, never looking at cancel or reporting progress: only the worker's memory shows it."""
    progress("greedy", 0.1)
    held = []
    for _ in range(8000):
        held.append(np.ones(8 << 20, np.uint8))
        time.sleep(0.01)
    raise AssertionError("never stopped")


def crash(message: Any, progress: Any, models: Any) -> Any:
    """Dies the way a native library's crash ends a process."""
    progress("crash", 0.1)
    os.abort()


def jumper(message: Any, progress: Any, models: Any) -> Any:
    """One large allocation at once, held a while, then the real split: a legitimate job that stays within its
    share must not be taken for one that keeps growing."""
    from layeringdiff.pipeline import run_job

    block = np.ones(JUMP_BYTES, np.uint8)
    for _ in range(30):
        progress("holding", 0.2)
        time.sleep(0.01)
    del block
    return run_job(message, progress, models)


JUMP_BYTES = 350 << 20
