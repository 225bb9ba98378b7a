"""A bounded fuzz run: 20,000 mutated messages against the real server, which must answer every one with a
reply the client can decode (no crash, no silent drop, no traceback), stay within its memory budget and
keep its log short, then still split correctly."""

import random
import time

import numpy as np
import psutil
from layering_protocol import Error, ErrorCode, Ping, Pong, Result, Split
from layeringdiff.client import Client, result_arrays
from layeringdiff.imaging.compose import compose

from tests.conftest import BackendProcess
from tests.integration.fuzz import mutate
from tests.integration.test_server import layer_and_mask

MESSAGES = 20_000
BATCH = 250
BUDGET = "2G"


def test_twenty_thousand_mutated_messages():
    server = BackendProcess("--max-memory", BUDGET)
    rng = random.Random(12)
    codes: dict[str, int] = {}
    start = time.monotonic()
    try:
        with Client(server.endpoint, heartbeat=False) as c:
            for batch in range(MESSAGES // BATCH):
                for _ in range(BATCH):
                    c.send_raw(mutate(rng))
                sentinel = c.send(Ping(float(batch)))
                answered = 0
                while True:
                    env = c.recv(60)  # every reply must decode
                    if env.reply_to == sentinel:
                        break
                    answered += 1
                    msg = env.message
                    if isinstance(msg, Error):
                        codes[msg.code] = codes.get(msg.code, 0) + 1
                        assert msg.code != ErrorCode.INTERNAL, msg
                        assert "Traceback" not in msg.text + msg.detail and len(msg.text) <= 1000
                assert answered >= BATCH, f"batch {batch}: {BATCH - answered} messages got no answer"
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
