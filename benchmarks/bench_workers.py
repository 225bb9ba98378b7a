"""Jobs in worker processes: throughput with one and two CPU workers, and how soon one client's single job starts
while another client has ten queued. Prints figures.

    .venv/bin/python benchmarks/bench_workers.py [--jobs 8] [--size 1024] [--queued 10]

Real `layeringdiff serve --workers N` processes on loopback, real offline splits (texture fill) of distinct
generated photos. Throughput: one client sends `--jobs` splits (its job limit raised to take them all) and the
clock runs from the first send to the last result. Fairness (two workers): client A sends `--queued` splits, then
client B sends one; B's wait is from its send to its job's first progress, against one job's time alone. The
issue's targets: throughput at least 1.6x with two workers on a 2-core machine; B's job starts within one job's
time. Last, a 2048^2 split is cancelled as each of its stages begins (target: confirmed within 1 s in every stage).
First it prints what two processes gain over one on this machine for pure arithmetic and for work that streams
memory, the ceiling for a split. Run it on a quiet machine: the figures are wall-clock.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from layering_protocol import Accepted, Cancel, Cancelled, Progress, Result, Split  # noqa: E402
from layeringdiff.client import Client  # noqa: E402
from layeringdiff.examples import synthetic_composite  # noqa: E402
from layeringdiff.wire import from_array  # noqa: E402

from tests.conftest import BackendProcess  # noqa: E402


def split(size: int, seed: int) -> Split:
    """A generated photo-like scene with its object's mask (u8, as the plugin sends)."""
    composite, alpha, _, _ = synthetic_composite(size, size, seed=seed)
    rgba = np.concatenate([composite, np.ones((size, size, 1), np.float32)], axis=-1)
    return Split(from_array(rgba, "u8", "RGBA"), mask=from_array((alpha > 0.5).astype(np.float32), "u8", "L"),
                 options={"fill": "texture"})


def finish(c: Client, job: str, timeout: float = 600) -> tuple[float, float]:
    """(seconds to its first progress, seconds to its result) from now."""
    start, first = time.monotonic(), None
    for env in c.events(job, timeout):
        if first is None and isinstance(env.message, Progress):
            first = time.monotonic() - start
        if not isinstance(env.message, (Progress, Result, Accepted)):
            raise SystemExit(f"job {job} failed: {env.message}")
    return first or 0.0, time.monotonic() - start


def finish_all(c: Client, ids: list[str], timeout: float = 1200) -> dict[str, tuple[float, float]]:
    """(seconds to its first progress, seconds to its result) of each job, from now: one client's replies to
    several jobs interleave, so they are read together (Client.events reads one job's and drops the others')."""
    start, deadline = time.monotonic(), time.monotonic() + timeout
    first: dict[str, float] = {}
    done: dict[str, tuple[float, float]] = {}
    while len(done) < len(ids):
        env = c.recv(max(0.0, deadline - time.monotonic()))
        job, now = env.reply_to, time.monotonic() - start
        if isinstance(env.message, Progress):
            first.setdefault(job, now)
        elif isinstance(env.message, Result):
            done[job] = (first.get(job, now), now)
        elif not isinstance(env.message, Accepted):
            raise SystemExit(f"job {job} failed: {env.message}")
    return done


def throughput(workers: int, jobs: list[Split]) -> float:
    server = BackendProcess("--workers", str(workers), "--max-client-jobs", str(len(jobs) + 1))
    try:
        with Client(server.endpoint) as c:
            finish(c, c.send(jobs[0]))  # the workers warm: imports and kernels loaded
            if workers > 1:  # the second worker warm too: two at once
                finish_all(c, [c.send(j) for j in jobs[:2]])
            start = time.monotonic()
            finish_all(c, [c.send(j) for j in jobs])
            return len(jobs) / (time.monotonic() - start)
    finally:
        server.terminate()


def fairness(queued: int, jobs: list[Split]) -> tuple[float, float, float]:
    """(B's wait for its one job to start, one job's time alone, one of A's jobs' time meanwhile), two workers."""
    server = BackendProcess("--workers", "2", "--max-client-jobs", str(queued + 1))
    try:
        with Client(server.endpoint) as a, Client(server.endpoint) as b:
            alone = statistics.median(finish(a, a.send(jobs[i % len(jobs)]))[1] for i in range(3))
            theirs = [a.send(jobs[i % len(jobs)]) for i in range(queued)]
            time.sleep(0.5)  # A's first two run, eight wait
            wait, _ = finish(b, b.send(jobs[0]))
            times = finish_all(a, theirs)
            ends = sorted(end for _, end in times.values())
            # A's jobs end two at a time: one job's time under this load is the gap between a worker's two ends
            loaded = statistics.median(later - earlier for earlier, later in zip(ends, ends[2:], strict=False))
            return wait, alone, loaded
    finally:
        server.terminate()


def cancel_times(job: Split) -> dict[str, float]:
    """For each stage a split reports: seconds from a cancel sent as the stage begins to `cancelled`."""
    server = BackendProcess()
    try:
        with Client(server.endpoint) as c:
            stages = []
            for env in c.events(c.send(job), 600):
                stage = getattr(env.message, "stage", None)
                if stage and stage not in stages:
                    stages.append(stage)
            out = {}
            for stage in stages:
                job_id = c.send(job)
                for env in c.events(job_id, 600):
                    if getattr(env.message, "stage", None) == stage:
                        start = time.monotonic()
                        c.send(Cancel(job_id))
                        final = [e.message for e in c.events(job_id, 60)][-1]
                        out[stage] = time.monotonic() - start if isinstance(final, Cancelled) else float("nan")
                        break
                    if not isinstance(env.message, (Progress, Accepted)):
                        out[stage] = float("nan")  # over before the stage came round again
                        break
            return out
    finally:
        server.terminate()


def _arithmetic(n: int) -> float:
    start, x = time.perf_counter(), 0
    for i in range(n):
        x += i * i
    return time.perf_counter() - start


def _streaming(n: int) -> float:
    a = np.ones(64 << 17)  # 64 MB: far past the caches, as a split's canvases are
    start = time.perf_counter()
    for _ in range(n):
        a = a * 1.0001
    return time.perf_counter() - start


def ceilings() -> dict[str, float]:
    """How much two processes at once gain over one on this machine, for pure arithmetic and for work that
    streams memory (most of a split: filters, matting's band, the fill over whole canvases)."""
    import multiprocessing

    out = {}
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_streaming, [1, 1])  # both started and warm before anything is timed
        for name, work, n in (("arithmetic", _arithmetic, 20_000_000), ("streaming memory", _streaming, 40)):
            gains = [2 * pool.apply(work, (n,)) / max(pool.map(work, [n, n], chunksize=1)) for _ in range(5)]
            out[name] = statistics.median(gains)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--queued", type=int, default=10)
    args = parser.parse_args()
    jobs = [split(args.size, seed) for seed in range(args.jobs)]
    print(f"{os.cpu_count()} cores, {args.jobs} splits of {args.size}^2 (texture fill)")
    print("this machine, two processes at once against one: " + ", ".join(f"{k} {v:.2f}x" for k, v in
                                                                          ceilings().items()))
    one = throughput(1, jobs)
    two = throughput(2, jobs)
    print(f"throughput: 1 worker {one * 60:.1f} jobs/min, 2 workers {two * 60:.1f} jobs/min: {two / one:.2f}x "
          "(target at least 1.6x)")
    wait, alone, loaded = fairness(args.queued, jobs)
    print(f"fairness: with {args.queued} of another client's jobs queued, a client's one job started after "
          f"{wait:.1f} s; one job takes {loaded:.1f} s while both workers run ({alone:.1f} s alone) (target: within "
          "one job's time)")
    times = cancel_times(split(2048, 0))
    print("cancel confirmed, a 2048^2 split, by stage: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items())
          + f" (worst {max(times.values()):.2f} s; target 1 s or less)")


if __name__ == "__main__":
    main()
