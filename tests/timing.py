"""The times the docs promise, the one margin a test adds to them, and a guard for calls that may block.

A test's time bound is the promise plus LOADED_MARGIN_S, never a looser figure of its own: where a promise is not
kept, the docs change, not the bound.
"""

import contextlib
import threading
import time
from typing import Any, Callable

import pytest
import zmq

# CI runs on 2 cores shared with other jobs (load averages of 2-10): a thread that should act at once may wait
# that long for a core (the soak benchmark measured a stop during a split at 1.17 s under a load of 10)
LOADED_MARGIN_S = 1.0
STOP_S = 2.0  # docs/backend.md: "SIGINT/SIGTERM stop it within 2 s in every state"
REVOKE_S = 1.0  # docs/backend.md: "revoking cuts off a connected machine within a second"
AT_ONCE_S = 0.0  # docs/backend.md, docs/krita.md: named "at once" (no waiting for a heartbeat's timeout)


def returns_within(call: Callable[[], Any], limit: float, ctx: zmq.Context, close: Callable[[], None]) -> Any:
    """`call()` in a thread: its value, or what it raised, raised here; then `close()` (the call's sockets) and the
    end of `ctx`, the call's own context, in every case. A call still blocked after `limit` seconds fails the test
    instead of hanging it: terminating `ctx` makes the blocked socket call return (ETERM)."""
    outcome: list[tuple[Any, BaseException | None]] = []

    def run() -> None:
        try:
            outcome.append((call(), None))
        except BaseException as exc:  # handed to the test's thread
            outcome.append((None, exc))

    thread = threading.Thread(target=run, name="returns-within", daemon=True)
    start = time.monotonic()
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        blocked = time.monotonic() - start
        ending = threading.Thread(target=ctx.term, name="term-blocked", daemon=True)
        ending.start()
        thread.join(5)
        with contextlib.suppress(zmq.ZMQError):  # a closing step may itself be refused now (ETERM)
            close()
        ending.join(5)
        pytest.fail(f"the call was still blocked after {blocked:.1f} s (limit {limit:.1f} s)")
    close()
    ctx.term()
    value, exc = outcome[0]
    if exc is not None:
        raise exc
    return value


def until_refused(send: Callable[[], Any], refused: type[BaseException], tries: int = 100,
                  pause: float = 0.05) -> tuple[float, BaseException]:
    """Call `send` until it raises `refused` (a refused key exchange drops the connection after a few sends are
    queued): how long that last call took, and what it raised."""
    for _ in range(tries):
        start = time.monotonic()
        try:
            send()
        except refused as exc:
            return time.monotonic() - start, exc
        time.sleep(pause)
    raise AssertionError(f"every send was queued for {tries * pause:.0f} s: the refused connection was never dropped")
