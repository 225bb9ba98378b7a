"""Revoking a studio machine's key: how long until the server closes that machine's open connection. Prints figures.

    .venv/bin/python benchmarks/bench_revoke.py [--rounds 10] [--size 1024]

A real `layeringdiff serve --keys` process on loopback; each round allows a new machine (`keys client`), connects it
with layeringdiff.client.Client, starts a split job (the server busy, as when an artist is cut off mid-job), deletes
its clients/NAME.key and times the disconnection its socket monitor reports. docs/backend.md promises "within a
second"; the server looks at the key list four times a second (server.CHECK_S).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import zmq  # noqa: E402
from layering_protocol import Accepted, Ping, Pong, Split  # noqa: E402
from layeringdiff.client import Client  # noqa: E402
from layeringdiff.keys import add_client, init_keys  # noqa: E402

from tests.conftest import BackendProcess  # noqa: E402
from tests.integration.test_server import layer_and_mask  # noqa: E402

PROMISE_S = 1.0  # docs/backend.md: "revoking cuts off a connected machine within a second"


def revoke_once(server: BackendProcess, keys: Path, name: str, size: int) -> float:
    """Seconds from deleting the machine's key to its connection closed by the server."""
    machine = {"server_key": str(keys / "server.key"), "client_key": str(add_client(keys, name))}
    with Client(server.endpoint, **machine) as c:
        monitor = c.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        try:
            if not isinstance(c.request(Ping(1.0), 10).message, Pong):
                raise SystemExit("the allowed machine got no pong")
            _, image, mask = layer_and_mask(size)
            c.send(Split(image, mask=mask))
            if not isinstance(c.recv(30).message, Accepted):
                raise SystemExit("the split was not accepted")
            (keys / "clients" / f"{name}.key").unlink()
            start = time.monotonic()
            if not monitor.poll(10_000):
                raise SystemExit(f"the connection of {name} was still open 10 s after its key was deleted")
            return time.monotonic() - start
        finally:
            c.sock.disable_monitor()
            monitor.close(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--size", type=int, default=1024, help="side of the split running when the key goes")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}")
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        init_keys(keys)
        server = BackendProcess("--keys", str(keys))
        try:
            times = []
            for i in range(args.rounds):
                times.append(revoke_once(server, keys, f"machine{i}", args.size))
                print(f"  round {i + 1}: closed {times[-1]:.2f} s after the key was deleted", flush=True)
        finally:
            server.terminate()
    print(f"revoked key, open connection closed after {min(times):.2f}-{max(times):.2f} s (median "
          f"{statistics.median(times):.2f} s, {len(times)} rounds, a {args.size}x{args.size} split running); promise "
          f"{PROMISE_S:.0f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
