"""Soak: 100,000 mixed messages against `layeringdiff serve`, its RSS over time and at most; then how long
SIGTERM takes to stop it in several states; then the attacks, each against a fresh server. Prints figures.

    .venv/bin/python benchmarks/bench_soak.py [--messages 100000] [--max-memory 2G] [--attacks-only]
        [--attack WORDS]  (only the attacks whose name holds WORDS)

Mixed: mutated and hostile messages (tests/integration/fuzz.py), pings, status, hellos, echoes of 1 KB to
8 MB, messages of 65-100 MB (over the size limit), small split jobs (many refused busy), from four clients
at once; plus a client that stops reading (2,500 echoes of 256 KB, never read) and a raw peer that leaves a
multipart message unfinished. The server runs with --max-memory (its budget) and --max-message 64M.

Attacks (targets in brackets), each while another client pings every 50 ms; printed for each: that client's
worst ping, the peak RSS against the budget, and the time SIGTERM takes to stop it afterwards and during it:
  connections: 10,000 TCP connection attempts, held open, against a server allowed 1024 open files [it survives]
  frames: one message of 10,000,000 empty frames at full speed [no ping delayed past 0.25 s]
  unfinished: 8 connections each sending 6,500,000 empty frames of a message never finished [RSS under budget]
  the connection flood again, with CURVE keys (--keys) [it survives]
  active connections: 1,000 libzmq connections from another host (127.0.0.2), each having sent a ping, open-files
  limit 1024 [a newcomer's pings and split answered]
  held replies: raw connections each asking a 256 MB echo, then reading nothing but keeping their connections
  alive, until they hold 90% of the budget [a newcomer's split done, not refused too_large]
  a job that grows 8 MB every 10 ms without a step (a test job runner) [killed over its worker's share; RSS under
  budget; answered too_large with its peak]
  real splits whose work needs about 3 GB and about 0.8 GB (4096^2 and 2048^2, a selection of two corner pixels)
  [the first refused too_large, the second done: RSS under the budget]
The peak RSS is the server's and its workers' together, sampled every 5 ms (and the server's own, its VmHWM).
Then the CLI's decoding cost: a 0.75 MB PNG of 16000^2 under a 2 GiB address-space limit [refused from its
header: peak RSS far under the limit]. Cancel in every stage: benchmarks/bench_workers.py.
"""

import argparse
import contextlib
import functools
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import zmq  # noqa: E402
from layering_protocol import Echo, Error, Hello, Ping, Pong, Split, Status, encode  # noqa: E402
from layeringdiff.client import Client  # noqa: E402
from layeringdiff.limits import Limits, parse_size  # noqa: E402
from layeringdiff.wire import from_array  # noqa: E402

from benchmarks.bench_job_memory import scene_arrays  # noqa: E402
from tests.conftest import BackendProcess, ServerProcess  # noqa: E402
from tests.integration.fuzz import mutate  # noqa: E402
from tests.integration.rawpeer import (  # noqa: E402
    EchoHolders,
    FileLimitedBackend,
    Pinger,
    PingFlood,
    RawPeer,
    open_connections,
)

CLIENTS = 4
BATCH = 200
MAX_MESSAGE = 64 << 20
FLOOD_FILES = 1024
FLOOD_CONNECTIONS = 10_000
FLOOD_FRAMES = 10_000_000
UNFINISHED_PEERS = 8
UNFINISHED_FRAMES = 6_500_000
ACTIVE_CONNECTIONS = 1_000
HELD_ECHO_SIDE = 8000  # 256 MB a reply
HELD_BUDGET = 2 << 30  # the budget the held replies fill (--max-memory 2G)
HANG_UP_FLOODERS = 6  # connections that flood pings with 1 ms ZMTP heartbeats, then hang up (libzmq's abort)
HANG_UP_SECONDS = 40
SMALL_FLOOD_FRAMES = 150_000  # most often complete (in libzmq) before the in-flight watch acts: drained by the loop


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.proc, self.every = psutil.Process(pid), every
        self.samples: list[tuple[float, int]] = []
        self.done = threading.Event()
        self.start_time = time.monotonic()

    def run(self) -> None:
        while not self.done.wait(self.every):
            try:
                self.samples.append((time.monotonic() - self.start_time, self.proc.memory_info().rss))
            except psutil.Error:
                return

    @property
    def peak(self) -> int:
        return max(rss for _, rss in self.samples)


def mixed(rng: random.Random, echoes: dict[int, object], split: Split) -> object:
    """One message: frames (bytes) for raw ones, a protocol message otherwise."""
    roll = rng.random()
    if roll < 0.55:  # 55% mutated
        return mutate(rng)
    if roll < 0.67:  # 12% echoes
        return Echo(echoes[rng.choices([1 << 10, 64 << 10, 1 << 20, 8 << 20], [50, 35, 14, 1])[0]])
    if roll < 0.675:  # 0.5% split jobs
        return split
    if roll < 0.6755:  # 0.05% over the size limit
        spec = {"w": 64, "h": 64, "channels": 4, "dtype": "u8", "order": "RGBA"}
        import msgpack

        header = msgpack.packb({"v": 1, "id": f"big{rng.getrandbits(32)}", "type": "echo", "body": {},
                                "images": [["image", spec]]})
        return [header, bytes(rng.choice([65, 100]) << 20)]  # over --max-message 64M: too_large
    return rng.choice([Ping(1.0), Status(), Hello("soak", 1)])


def soak(server: BackendProcess, messages: int, sampler: RssSampler) -> dict[str, int]:
    rng = random.Random(7)
    echoes = {n: from_array(np.zeros((1, n // 4, 4), np.float32), "u8", "RGBA") for n in
              (1 << 10, 64 << 10, 1 << 20, 8 << 20)}
    rgba = np.random.default_rng(0).random((96, 96, 4)).astype(np.float32)
    rgba[..., 3] = 1
    mask = np.zeros((96, 96), np.float32)
    mask[24:72, 24:72] = 1
    split = Split(from_array(rgba, "u8", "RGBA"), mask=from_array(mask, "u8", "L"))
    clients = [Client(server.endpoint, heartbeat=False) for _ in range(CLIENTS)]
    codes: dict[str, int] = {}
    sent = 0
    next_report = 0
    try:
        while sent < messages:
            for c in clients:
                for _ in range(BATCH // CLIENTS):
                    m = mixed(rng, echoes, split)
                    if isinstance(m, list):
                        c.send_raw(m)
                    else:
                        c.send(m)
                    sent += 1
            for c in clients:  # each request before this ping has its first answer by the pong
                sentinel = c.send(Ping(0.0))
                while True:
                    env = c.recv(120)
                    if env.reply_to == sentinel:
                        break
                    if isinstance(env.message, Error):
                        codes[env.message.code] = codes.get(env.message.code, 0) + 1
            if sent >= next_report:
                t, rss = sampler.samples[-1] if sampler.samples else (0.0, 0)
                print(f"  {sent:>7} messages  {t:6.1f} s  RSS {rss / 2**20:6.0f} MB  (max {sampler.peak / 2**20:.0f})",
                      flush=True)
                next_report += messages // 10
    finally:
        for c in clients:
            c.close()
    return codes


def slow_reader(server: BackendProcess) -> tuple[int, float]:
    """The issue's reproduction: a client sends 2,500 echoes of 256 KB and never reads. Returns pings answered
    of 14 meanwhile and how long the cut-off took to show in the log."""
    ctx = zmq.Context()
    bad = ctx.socket(zmq.DEALER)
    bad.setsockopt(zmq.LINGER, 0)
    bad.setsockopt(zmq.SNDTIMEO, 2000)
    bad.connect(server.endpoint)
    frames = encode(Echo(from_array(np.zeros((256, 256, 4), np.float32), "u8", "RGBA")))
    start = time.monotonic()
    for _ in range(2500):
        try:
            bad.send_multipart(frames, copy=False)
        except zmq.Again:  # it has been cut off and its own queue is full
            break
    answered = 0
    with Client(server.endpoint) as c:
        for _ in range(14):
            try:
                answered += isinstance(c.request(Ping(1.0), 2).message, Pong)
            except (TimeoutError, ConnectionError):
                pass
    while "does not read its replies" not in server.log and time.monotonic() - start < 30:
        time.sleep(0.05)
    bad.close()
    ctx.term()
    return answered, time.monotonic() - start


def unfinished(server: BackendProcess) -> int:
    peer = RawPeer(server.endpoint)
    sent = 0
    try:
        for _ in range(2000):
            peer.send_part(bytes(1 << 20))
            sent += 1
    except OSError:
        pass
    peer.close()
    return sent


def stop_time(server: BackendProcess) -> float:
    start = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(60)
    return time.monotonic() - start


def stop_times() -> dict[str, float]:
    out = {}
    server = BackendProcess()
    out["idle"] = stop_time(server)
    server = BackendProcess()
    with Client(server.endpoint) as c:
        rgba = np.random.default_rng(0).random((2048, 2048, 4)).astype(np.float32)
        mask = np.zeros((2048, 2048), np.float32)
        mask[500:1500, 500:1500] = 1
        job = c.send(Split(from_array(rgba, "u8", "RGBA"), mask=from_array(mask, "u8", "L")))
        for env in c.events(job, 120):
            if getattr(env.message, "stage", "") == "matting":
                break
        out["during a 2048^2 split (matting)"] = stop_time(server)
    server = BackendProcess("--client-backlog", "16M")
    slow_reader(server)
    out["with a client cut off for not reading"] = stop_time(server)
    server = ServerProcess(job_runner="tests.integration.runners:stuck")  # one call that never checks for cancel
    with Client(server.endpoint) as c:
        c.send(split_message())
        while getattr(c.recv(30).message, "stage", "") != "stuck":
            pass
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(60)
        out["in a step that cannot be interrupted"] = time.monotonic() - start
    return out


class TreePeak(threading.Thread):
    """The largest RSS of a process and its children together (the server and its workers), every 5 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.005):
            try:
                total = self.proc.memory_info().rss
                children = self.proc.children()
            except psutil.Error:
                return
            for child in children:
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
            self.peak = max(self.peak, total)

    def __enter__(self) -> "TreePeak":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join(5)


def split_message() -> Split:
    rgba = np.ones((64, 64, 4), np.float32)
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1
    return Split(from_array(rgba, "u8", "RGBA"), mask=from_array(mask, "u8", "L"))


def connection_flood(server: BackendProcess, **keys: str) -> str:
    """FLOOD_CONNECTIONS idle connections opened in waves of 1,000 and held, then closed."""
    socks: list = []
    try:
        for _ in range(FLOOD_CONNECTIONS // 1000):
            socks += open_connections(server.endpoint, 1000)
            time.sleep(0.2)
        time.sleep(2)
        alive = server.proc.poll() is None
        open_fds = len(os.listdir(f"/proc/{server.proc.pid}/fd")) if alive else 0
    finally:
        for sock in socks:
            sock.close()
    time.sleep(1)
    answers = server.proc.poll() is None and pongs(server.endpoint, **keys)
    return (f"{len(socks)} attempts; server {'alive' if alive else 'DEAD'}, {open_fds} descriptors open "
            f"(limit {FLOOD_FILES}); answers afterwards: {answers}")


def keyed_connection_flood(server: BackendProcess) -> str:
    return connection_flood(server, **client_keys())


def newcomer(endpoint: str) -> str:
    """What a client that connects now gets: its pings, and a small split's last reply."""
    with Client(endpoint) as c:
        pings = 0
        for _ in range(3):
            with contextlib.suppress(TimeoutError):
                pings += isinstance(c.request(Ping(0.0), 5).message, Pong)
    return f"a newcomer's pings {pings}/3, its split {final_reply(endpoint, split_message(), 60)}"


def active_connection_flood(server: BackendProcess) -> str:
    with PingFlood(server.endpoint, ACTIVE_CONNECTIONS):
        time.sleep(3)
        open_fds = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
        return f"{open_fds} descriptors open (limit {FLOOD_FILES}); {newcomer(server.endpoint)}"


def held_replies(server: BackendProcess) -> str:
    with EchoHolders(server.endpoint, HELD_ECHO_SIDE, int(0.9 * HELD_BUDGET), server.proc.pid) as holders:
        held = psutil.Process(server.proc.pid).memory_info().rss
        time.sleep(6)
        outcome = newcomer(server.endpoint)
    cut = sum("it has taken nothing of its replies" in line for line in server.log.splitlines())
    return (f"{len(holders.peers)} connections held {held / 2**20:.0f} MB of replies; {outcome}; {cut} of them cut "
            "off")


def hang_up_flood(server: BackendProcess) -> str:
    """Connections that send pings without reading a reply, their own ZMTP heartbeat every 1 ms, and hang up after
    0.3-1.5 s, over and over: libzmq 4.3.5 aborts the server's process on them (serve/supervisor.py says how), and
    `serve --restart` starts it again on its port."""
    stop = threading.Event()
    ping = encode(Ping(0.0), "f" * 32)

    def flood(seed: int) -> None:
        rng = random.Random(seed)
        ctx = zmq.Context()
        while not stop.is_set():
            sock = ctx.socket(zmq.DEALER)
            sock.linger, sock.sndhwm = 0, 100_000
            sock.setsockopt(zmq.HEARTBEAT_IVL, 1)
            sock.connect(server.endpoint)
            end = time.monotonic() + rng.uniform(0.3, 1.5)
            while time.monotonic() < end and not stop.is_set():
                try:
                    for _ in range(200):
                        sock.send_multipart(ping, zmq.NOBLOCK)
                except zmq.Again:
                    time.sleep(0.001)
            sock.close()
        ctx.term()

    threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(HANG_UP_FLOODERS)]
    for thread in threads:
        thread.start()
    time.sleep(HANG_UP_SECONDS)
    stop.set()
    for thread in threads:
        thread.join(10)
    time.sleep(2)
    restarts = server.log.count("starting it again")
    return f"the server's process aborted and started again {restarts} times in {HANG_UP_SECONDS} s; " + \
        newcomer(server.endpoint)


def final_reply(endpoint: str, message: object, timeout: float = 300, **keys: str) -> str:
    """The job's last reply, in a few words."""
    start = time.monotonic()
    with Client(endpoint, **keys) as c:
        job = c.send(message)
        for env in c.events(job, timeout):
            last = env.message
    words = f"{last.code}: {last.text}" if isinstance(last, Error) else type(last).__name__
    return f"answered in {time.monotonic() - start:.1f} s: {words[:220]}"


def greedy_job(server: BackendProcess) -> str:
    return final_reply(server.endpoint, split_message(), 60)


def corners_split(size: int) -> Callable[[BackendProcess], str]:
    """A split whose work is of the whole canvas: its selection is two corner pixels (job_memory.py's worst)."""
    def attack(server: BackendProcess) -> str:
        image, mask, _ = scene_arrays(size, size, "corners", [])
        rgba = np.dstack([image, np.ones(image.shape[:2], np.float32)])
        return final_reply(server.endpoint, Split(from_array(rgba, "u8", "RGBA"), mask=from_array(mask, "u8", "L")))

    return attack


def decoding_bomb() -> str:
    """`layeringdiff split` of a 0.75 MB PNG that decodes to 16000^2, under a 2 GiB address-space limit."""
    from PIL import Image

    limit = 1 << 31
    with tempfile.TemporaryDirectory() as folder:
        big = Path(folder) / "big.png"
        Image.new("RGB", (16000, 16000), (90, 120, 200)).save(big)
        # the CLI under a wrapper of its own, whose children's peak is the CLI's alone
        wrapper = ("import resource, subprocess, sys\n"
                   "limit = int(sys.argv[1])\n"
                   "proc = subprocess.run(sys.argv[2:], capture_output=True, text=True,\n"
                   "                      preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))\n"
                   "print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
                   "sys.stderr.write(proc.stderr)\n")
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", wrapper, str(limit), sys.executable, "-m", "layeringdiff", "split",
                               str(big), "--box", "100,100,900,900", "-o", str(Path(folder) / "b.ora")],
                              capture_output=True, text=True, timeout=600)
        elapsed = time.monotonic() - start
        code, peak_kib = (int(v) for v in proc.stdout.split())
        left = sorted(p.name for p in Path(folder).iterdir())
        size = big.stat().st_size
    return (f"{size / 2**20:.2f} MB PNG of 16000^2: exit {code} in {elapsed:.1f} s, peak RSS {peak_kib / 2**10:.0f} MB "
            f"(address-space limit {limit >> 20} MB); files left {left}; {proc.stderr.strip().splitlines()[-1][:160]}")


@functools.cache
def keys_folder() -> Path:
    """A keys folder (`layeringdiff keys init`) with one allowed client, alice, made once."""
    from layeringdiff.keys import add_client, init_keys

    folder = Path(tempfile.mkdtemp(prefix="soak-keys-"))
    init_keys(folder)
    add_client(folder, "alice")
    return folder


def client_keys() -> dict[str, str]:
    return {"server_key": str(keys_folder() / "server.key"),
            "client_key": str(keys_folder() / "secrets" / "alice.key_secret")}


def keyed_backend(files: int, *args: str) -> BackendProcess:
    return FileLimitedBackend(files, "--keys", str(keys_folder()), *args)


def frame_flood(server: BackendProcess, frames: int = FLOOD_FRAMES) -> str:
    peer = RawPeer(server.endpoint)
    peer.send_part(b"header")
    sent = peer.flood(b"", frames, last=True)
    closed = peer.closed_by_server(10)
    peer.close()
    return f"the flooder had written {sent:,} frames; cut off: {closed}; {held_line(server)}"


def small_frame_flood(server: BackendProcess) -> str:
    return frame_flood(server, SMALL_FLOOD_FRAMES)


def unfinished_frames(server: BackendProcess) -> str:
    sent: list[int] = []

    def flood() -> None:
        peer = RawPeer(server.endpoint)
        peer.send_part(b"header")
        sent.append(peer.flood(b"", UNFINISHED_FRAMES))
        peer.close()

    threads = [threading.Thread(target=flood) for _ in range(UNFINISHED_PEERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    time.sleep(2)
    rss = psutil.Process(server.proc.pid).memory_info().rss
    hung_up = server.log.count("frames of a message not received yet")
    return (f"{hung_up} of {UNFINISHED_PEERS} hung up (each had written {min(sent):,} to {max(sent):,} frames); "
            f"{held_line(server)}; RSS 2 s after: {rss / 2**20:.0f} MB")


def held_line(server: BackendProcess) -> str:
    """What the server's log says about the cut-off: the frames it held (the in-flight watch) or drained (the loop)."""
    time.sleep(0.5)
    held = [line.split("at least ", 1)[1].split(" frames")[0] for line in server.log.splitlines()
            if "frames of a message not received yet" in line]
    drained = [line.split("dropped the ", 1)[1].split(" frames")[0] for line in server.log.splitlines()
               if "dropped the " in line]
    if held:
        return f"hung up holding at least {', '.join(held)} frames"
    return f"complete before the watch acted: {', '.join(drained) or 'no'} frames drained by the loop"


def pongs(endpoint: str, **keys: str) -> bool:
    with Client(endpoint, **keys) as c:
        return isinstance(c.request(Ping(0.0), 10).message, Pong)


def proc_status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def stop_during(start: Callable[..., BackendProcess], max_memory: str,
                attack: Callable[[BackendProcess], str]) -> float:
    """SIGTERM half a second into the attack, against a fresh server."""
    server = start("--max-memory", max_memory)

    def run() -> None:
        with contextlib.suppress(Exception):  # the server is gone under it: whatever that raises
            attack(server)

    thread = threading.Thread(target=run, daemon=True)
    try:
        thread.start()
        time.sleep(0.5)
        return stop_time(server)
    finally:
        server.kill()
        thread.join(120)  # its sockets closed before the next server starts


def attacks(max_memory: str, only: str = "") -> None:
    print(f"attacks (another client pinging every 50 ms; budget {max_memory}; peak RSS: the server and its workers "
          "sampled every 5 ms, and the server's own VmHWM):")
    budget = parse_size(max_memory)
    runs = ((f"{FLOOD_CONNECTIONS:,} connections, open-files limit {FLOOD_FILES}", connection_flood,
             lambda *a: FileLimitedBackend(FLOOD_FILES, *a), False),
            (f"{FLOOD_CONNECTIONS:,} connections, open-files limit {FLOOD_FILES}, with --keys", keyed_connection_flood,
             lambda *a: keyed_backend(FLOOD_FILES, *a), True),
            (f"{ACTIVE_CONNECTIONS:,} active connections from another host, open-files limit {FLOOD_FILES}",
             active_connection_flood, lambda *a: FileLimitedBackend(FLOOD_FILES, *a), False),
            (f"held replies: echoes of {HELD_ECHO_SIDE}^2 never read", held_replies,
             lambda *a: BackendProcess("--max-memory", f"{HELD_BUDGET >> 30}G"), False),
            (f"{HANG_UP_FLOODERS} connections flooding pings and hanging up, serve --restart always",
             hang_up_flood, lambda *a: BackendProcess("--restart", "always", *a), False),
            (f"one message of {FLOOD_FRAMES:,} empty frames", frame_flood, BackendProcess, False),
            (f"one message of {SMALL_FLOOD_FRAMES:,} empty frames in one write", small_frame_flood, BackendProcess,
             False),
            (f"{UNFINISHED_PEERS} unfinished messages of {UNFINISHED_FRAMES:,} empty frames", unfinished_frames,
             BackendProcess, False),
            ("a job growing 8 MB every 10 ms without a step", greedy_job,
             lambda *a: ServerProcess(job_runner="tests.integration.runners:greedy", max_memory=budget), False),
            ("a 4096^2 split of two corner pixels (its work: about 3 GB)", corners_split(4096), BackendProcess,
             False),
            ("a 2048^2 split of two corner pixels (its work: about 0.8 GB)", corners_split(2048), BackendProcess,
             False))
    for name, attack, start, keyed in runs:
        if only not in name:
            continue
        server = start("--max-memory", max_memory)
        try:
            pid = server.proc.pid
            with open(f"/proc/{pid}/clear_refs", "w") as fh:
                fh.write("5")  # VmHWM from here
            idle = proc_status(pid, "VmRSS")
            with TreePeak(pid) as tree, Pinger(server.endpoint, **(client_keys() if keyed else {})) as pinger:
                outcome = attack(server)
            peak = proc_status(pid, "VmHWM")
            stop = stop_time(server) if server.proc.poll() is None else float("nan")
        finally:
            server.kill()
        during = stop_during(start, max_memory, attack)
        print(f"  {name}: {outcome}\n    worst ping {pinger.worst * 1000:.0f} ms ({pinger.pings} pings); peak RSS "
              f"{tree.peak / 2**20:.0f} MB with its workers, the server's own {peak / 2**20:.0f} MB (idle "
              f"{idle / 2**20:.0f} MB, budget {max_memory}); SIGTERM after it {stop:.2f} s, half a second into it "
              f"{during:.2f} s", flush=True)
    if only in "the CLI's decoding cost":
        print(f"  the CLI's decoding cost: {decoding_bomb()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--max-memory", default="2G")
    parser.add_argument("--attacks-only", action="store_true", help="only the attacks (about ten minutes)")
    parser.add_argument("--attack", default="", metavar="WORDS", help="with --attacks-only: only the attacks whose "
                                                                      "name holds WORDS")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * FLOOD_CONNECTIONS)), hard))  # our sockets
    if args.attacks_only:
        attacks(args.max_memory, args.attack)
        return
    server = BackendProcess("--max-memory", args.max_memory, "--max-message", f"{MAX_MESSAGE >> 20}M")
    sampler = RssSampler(server.proc.pid)
    sampler.start()
    try:
        start = time.monotonic()
        print(f"{args.messages} mixed messages from {CLIENTS} clients (server RSS sampled every 0.2 s):")
        codes = soak(server, args.messages, sampler)
        elapsed = time.monotonic() - start
        print(f"  done in {elapsed:.0f} s ({args.messages / elapsed:.0f} messages/s); errors by code: "
              + ", ".join(f"{k} {v}" for k, v in sorted(codes.items())))
        answered, cut = slow_reader(server)
        print(f"a client sending 2,500 echoes of 256 KB and never reading: {answered}/14 pings of another client "
              f"answered meanwhile; cut off after {cut:.1f} s")
        sent = unfinished(server)
        hard = Limits.make(max_memory=parse_size(args.max_memory), max_message=MAX_MESSAGE).hard_message
        print(f"a raw peer leaving a multipart message unfinished: hung up after {sent} MB (limit {hard >> 20} MB)")
        time.sleep(1)
        alive = Client(server.endpoint)
        ok = isinstance(alive.request(Ping(0.0), 10).message, Pong)
        alive.close()
        print(f"server answers afterwards: {ok}; log {len(server.log) / 1e6:.2f} MB; 'Traceback' in the log: "
              f"{'Traceback' in server.log}")
    finally:
        sampler.done.set()
        server.terminate()
    print(f"server RSS: start {sampler.samples[0][1] / 2**20:.0f} MB, max {sampler.peak / 2**20:.0f} MB "
          f"(budget {args.max_memory})")
    print("SIGTERM to exit:")
    for state, seconds in stop_times().items():
        print(f"  {state}: {seconds:.2f} s")
    attacks(args.max_memory)


if __name__ == "__main__":
    main()
