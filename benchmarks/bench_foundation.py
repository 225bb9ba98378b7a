"""Foundation benchmark: offline split speed (each fill, stage by stage), socket transfer vs PNG, peak memory.
Prints figures.

    .venv/bin/python benchmarks/bench_foundation.py [--quick]

Targets on 2 cores: the 1024^2 "object" split <= 1.5 s median with the smooth fill (issue 2), <= 2 s with the texture
fill (issue 13); 4096^2 RGBA transfer >= 20x faster than PNG. benchmarks/bench_big.py covers 4096^2 canvases.
"""

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import time

import cv2
import numpy as np
from layering_protocol import Echo, EchoReply
from layeringdiff.client import Client
from layeringdiff.examples import photo, soft_alpha
from layeringdiff.imaging.compose import compose
from layeringdiff.stages.split import SplitOptions, split_layer
from layeringdiff.wire import from_array
from PIL import Image as PILImage

SCENES = {"object": 10, "hair": 40}  # hair strands drawn around the object: "hair" has a 2x wider band


def scene(size: int, hair: int = SCENES["object"]) -> tuple[np.ndarray, np.ndarray]:
    fg = cv2.resize(photo("chelsea"), (size, size), interpolation=cv2.INTER_CUBIC)
    bg = cv2.resize(photo("astronaut"), (size, size), interpolation=cv2.INTER_CUBIC)
    alpha = soft_alpha(size, size, seed=0, hair=hair)
    return np.clip(compose(alpha, fg, bg), 0, 1), (alpha > 0.5).astype(np.float32)


def time_split(size: int, runs: int, hair: int = SCENES["object"], fill: str = "texture"
               ) -> tuple[list[float], float, dict[str, float]]:
    """Wall times, the unknown band's share and the median time of each split stage."""
    image, mask = scene(size, hair)
    times, stages = [], []
    for _ in range(runs):
        t = time.perf_counter()
        result = split_layer(image, mask=mask, options=SplitOptions(quantize=255, fill=fill))
        times.append(time.perf_counter() - t)
        stages.append(result.info["timings"])
    median = {k: statistics.median(s.get(k, 0.0) for s in stages) for k in stages[0]}
    return times, result.info.get("unknown_fraction", 0.0), median


def png_pillow(u8: np.ndarray) -> int:
    buf = io.BytesIO()
    PILImage.fromarray(u8).save(buf, format="PNG")
    back = np.asarray(PILImage.open(io.BytesIO(buf.getvalue())))
    assert back.shape == u8.shape
    return len(buf.getvalue())


def png_opencv(u8: np.ndarray) -> int:
    ok, enc = cv2.imencode(".png", u8, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    back = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)
    assert ok and back.shape == u8.shape
    return len(enc)


def peak_rss_mb(pid: int | None = None) -> float:
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    args = parser.parse_args()
    runs = 3 if args.quick else 7
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}, numpy {np.__version__}; "
          f"load {os.getloadavg()[0]:.2f} (1 min)")
    time_split(256, 1)  # numba kernels compile (or load from cache) once
    for fill in ("smooth", "texture"):  # same scene, same run: the fill's own cost
        t, band, stages = time_split(1024, runs, fill=fill)
        print(f"split 1024x1024 object, {fill} fill (unknown band {band:.1%}): median {statistics.median(t):.3f} s"
              f"  min {min(t):.3f} s  ({runs} runs); stages: " + ", ".join(f"{k} {v:.3f}" for k, v in stages.items()))
    for name, hair in SCENES.items():
        for size, n in ((1024, runs), (2048, max(3, runs // 2))):
            if (name, size) == ("object", 1024):
                continue  # above
            t, band, _ = time_split(size, n, hair)
            print(f"split {size}x{size} {name:<6} (unknown band {band:.1%}): median {statistics.median(t):.3f} s"
                  f"  min {min(t):.3f} s  ({n} runs)")
    # a small object on a big canvas: the work follows the object, not the canvas
    image, mask = scene(512)
    canvas = cv2.resize(photo("rocket"), (4096, 4096), interpolation=cv2.INTER_CUBIC)
    canvas[1800:2312, 2600:3112] = image
    big_mask = np.zeros((4096, 4096), np.float32)
    big_mask[1800:2312, 2600:3112] = mask
    t = []
    for _ in range(3):
        start = time.perf_counter()
        split_layer(canvas, mask=big_mask, options=SplitOptions(quantize=255))
        t.append(time.perf_counter() - start)
    print(f"split 512x512 object on a 4096x4096 canvas: median {statistics.median(t):.3f} s, single runs "
          f"{min(t):.2f}-{max(t):.2f} s (3 runs)")
    print(f"peak RSS of this process after splits: {peak_rss_mb():.0f} MB")

    big = cv2.resize(photo("astronaut"), (4096, 4096), interpolation=cv2.INTER_CUBIC)
    rgba = np.dstack([big, np.ones(big.shape[:2], np.float32)])
    image = from_array(rgba, "u8", "BGRA")
    proc = subprocess.Popen([sys.executable, "-m", "layeringdiff", "serve"], stdout=subprocess.PIPE, text=True)
    try:
        endpoint = proc.stdout.readline().split()[1]
        with Client(endpoint) as client:
            client.request(Echo(from_array(rgba[:8, :8], "u8", "BGRA")))  # connect
            trips = []
            for _ in range(runs):
                t = time.perf_counter()
                reply = client.request(Echo(image), timeout=120)
                trips.append(time.perf_counter() - t)
                assert isinstance(reply.message, EchoReply)
                assert memoryview(reply.message.image.data).nbytes == 4096 * 4096 * 4
        server_rss = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(20)
    u8 = np.frombuffer(image.data, np.uint8).reshape(4096, 4096, 4)
    trip = statistics.median(trips)
    print(f"4096x4096 RGBA u8 round trip over ZeroMQ loopback: median {trip * 1000:.0f} ms, "
          f"{min(trips) * 1000:.0f}-{max(trips) * 1000:.0f} ms ({runs} runs)")
    for label, codec in (("Pillow, zlib level 6 (default)", png_pillow), ("OpenCV, level 1 (fastest)", png_opencv)):
        times, nbytes = [], 0
        for _ in range(3):
            t = time.perf_counter()
            nbytes = codec(u8)
            times.append(time.perf_counter() - t)
        png = statistics.median(times)
        # against each round trip: the range says how much the comparison moves from run to run
        print(f"4096x4096 RGBA PNG encode+decode, {label}: median {png * 1000:.0f} ms, {nbytes / 1e6:.1f} MB;"
              f" round trip is {png / trip:.1f}x faster (target >= 20x; {png / max(trips):.0f}-{png / min(trips):.0f}x"
              f" against the single round trips)")
    print(f"peak RSS: benchmark {peak_rss_mb():.0f} MB, server {server_rss:.0f} MB; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
