"""First start of the backend: compiling the image kernels, and starting with them prepared. Prints figures.

    .venv/bin/python benchmarks/bench_first_start.py

Each figure uses its own empty kernel cache (NUMBA_CACHE_DIR), so it is the cost a new installation pays once.
"""

import os
import subprocess
import sys
import tempfile
import time


def seconds_to_ready(env: dict) -> tuple[float, bool]:
    """`layeringdiff serve` until its READY line; whether it said it was preparing the kernels."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "layeringdiff", "serve", "--port", "0"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    prepared = False
    try:
        for line in proc.stdout:
            prepared = prepared or line.startswith("PREPARING ")
            if line.startswith("READY "):
                return time.perf_counter() - start, prepared
        raise RuntimeError("the backend exited without READY")
    finally:
        proc.terminate()
        proc.wait(30)


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as cold, tempfile.TemporaryDirectory() as cold_serve:
        env = dict(os.environ, NUMBA_CACHE_DIR=cold)
        prepare = [sys.executable, "-m", "layeringdiff", "prepare"]
        print(f"layeringdiff prepare, empty kernel cache (the installer's step): {timed(prepare, env):.1f} s")
        print(f"layeringdiff prepare again (all cached): {timed(prepare, env):.1f} s")
        ready, preparing = seconds_to_ready(env)
        print(f"serve to READY after prepare: {ready:.1f} s (compiled on start: {preparing})")
        ready, preparing = seconds_to_ready(dict(os.environ, NUMBA_CACHE_DIR=cold_serve))
        print(f"serve to READY from an empty kernel cache (no installer step): {ready:.1f} s "
              f"(compiled on start: {preparing})")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
