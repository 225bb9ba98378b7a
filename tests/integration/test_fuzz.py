"""A bounded fuzz run: 20,000 mutated messages against the real server, which must answer every one with a
reply the client can decode (no crash, no silent drop, no traceback), stay within its memory budget and
keep its log short, then still split correctly."""

import random
import time

import numpy as np
import psutil
from layering_protocol import (
    DEFAULT_MAX_PIXELS,
    Accepted,
    Cancel,
    Cancelled,
    Envelope,
    Error,
    ErrorCode,
    Ping,
    Pong,
    Progress,
    ProtocolError,
    Result,
    Split,
    decode,
)
from layeringdiff.client import Client, result_arrays
from layeringdiff.imaging.compose import compose

from tests.conftest import BackendProcess
from tests.integration.fuzz import mutate
from tests.integration.test_server import layer_and_mask

MESSAGES = 20_000
BATCH = 250
BUDGET = "2G"


def _cancels(frames: list[bytes]) -> str | None:
    """The job a message cancels, read as the server would (None when it is no cancel or does not decode)."""
    try:
        message = decode([memoryview(f) for f in frames], DEFAULT_MAX_PIXELS).message
    except ProtocolError:
        return None
    return message.job if isinstance(message, Cancel) else None


def test_twenty_thousand_mutated_messages():
    """Each message is answered exactly once before the next ping's pong (the loop answers in order), except a
    cancel that finds its job: the job answers that, from its worker, maybe later (PROTOCOL.md section 4)."""
    server = BackendProcess("--max-memory", BUDGET)
    rng = random.Random(12)
    codes: dict[str, int] = {}
    running: set[str] = set()  # accepted jobs whose last reply has not come
    accepted: set[str] = set()
    start = time.monotonic()

    def answers(env: Envelope) -> int:
        """1 when this reply answers a message of its own, 0 when it is a later reply of an accepted job."""
        msg, job = env.message, env.reply_to
        if isinstance(msg, Accepted):
            running.add(msg.job)
            accepted.add(msg.job)
            return 1
        if job in running and isinstance(msg, Progress):
            return 0
        if job in running and (isinstance(msg, (Result, Cancelled)) or isinstance(msg, Error) and msg.job == job):
            running.discard(job)
            return 0
        return 1

    try:
        with Client(server.endpoint, heartbeat=False) as c:
            for batch in range(MESSAGES // BATCH):
                cancels = []
                for _ in range(BATCH):
                    frames = mutate(rng)
                    cancels.append(_cancels(frames))
                    c.send_raw(frames)
                sentinel = c.send(Ping(float(batch)))
                answered = 0
                while True:
                    env = c.recv(60)  # every reply must decode
                    if env.reply_to == sentinel:
                        break
                    answered += answers(env)
                    msg = env.message
                    if isinstance(msg, Error):
                        codes[msg.code] = codes.get(msg.code, 0) + 1
                        assert msg.code != ErrorCode.INTERNAL, msg
                        assert "Traceback" not in msg.text + msg.detail and len(msg.text) <= 1000
                excused = sum(1 for job in cancels if job is not None and job in accepted)
                assert answered <= BATCH, f"batch {batch}: {answered - BATCH} answers too many"
                assert answered + excused >= BATCH, f"batch {batch}: {BATCH - answered} messages got no answer"
            while running:  # every accepted job ends with its last reply
                answers(c.recv(60))
            elapsed = time.monotonic() - start
            assert elapsed < 120, f"{MESSAGES} messages took {elapsed:.0f} s"
            assert isinstance(c.request(Ping(0.0)).message, Pong)
            rgba, image, mask = layer_and_mask(256)
            final = c.run(Split(image, mask=mask), timeout=120)[0].message
            assert isinstance(final, Result)
            out = result_arrays(final)
            a = out["foreground"][..., 3]
            recomposed = compose(a, out["foreground"][..., :3], out["background"][..., :3])
            assert np.abs(recomposed - rgba[..., :3])[a < 1].max() <= 1 / 255 + 1e-6
        assert psutil.Process(server.proc.pid).memory_info().rss < 2 << 30
        assert len(codes) >= 6, codes  # the mutations reach many checks
        assert len(server.log) < 1_000_000, f"{len(server.log)} bytes of log"  # cut short and rate-limited
        assert "Traceback" not in server.log
    finally:
        server.terminate()
