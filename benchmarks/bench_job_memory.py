"""A job's measured peak memory beside the server's estimate of it (backend/layeringdiff/job_memory.py).

    .venv/bin/python benchmarks/bench_job_memory.py [--quick] [--check]

Each scene runs in a fresh process through the server's own job code (pipeline.run_job on the protocol
message the server would receive); the peak is the RSS high-water mark above the RSS when the job starts.
Run it whenever the pipeline changes and update job_memory's constants: the estimate must stay within 2x
of every measured peak. --check exits with 1 when it does not; --quick leaves out the 4096^2 scenes.
"""

import argparse
import json
import os
import subprocess
import sys
import time

SCENES = [  # name, canvas side, object side, hair strands, layer dtype, hint
    ("object, mask", 1024, 1024, 10, "u8", "mask"),
    ("object, box", 1024, 1024, 10, "u8", "box"),
    ("object, mask", 2048, 2048, 10, "u8", "mask"),
    ("hair, mask", 2048, 2048, 40, "u8", "mask"),
    ("object, box", 2048, 2048, 10, "u8", "box"),
    ("object, f32 layer", 2048, 2048, 10, "f32", "mask"),
    ("object, mask alpha", 2048, 2048, 10, "u8", "alpha"),
    ("object, mask", 4096, 4096, 10, "u8", "mask"),
    ("512 object on the canvas", 4096, 512, 10, "u8", "mask"),
]


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(canvas: int, side: int, hair: int, dtype: str, hint: str) -> dict:
    """In this (fresh) process: the job's peak RSS above its start."""
    import gc

    import cv2
    import numpy as np
    from layering_protocol import Split
    from layeringdiff.examples import photo, soft_alpha
    from layeringdiff.imaging.compose import compose
    from layeringdiff.job_memory import estimate_job
    from layeringdiff.models import ModelManager
    from layeringdiff.pipeline import run_job
    from layeringdiff.wire import from_array

    def message(canvas: int, side: int) -> Split:
        fg = cv2.resize(photo("chelsea"), (side, side), interpolation=cv2.INTER_AREA)
        bg = cv2.resize(photo("astronaut"), (side, side), interpolation=cv2.INTER_AREA)
        alpha = soft_alpha(side, side, seed=0, hair=hair)
        image = np.clip(compose(alpha, fg, bg), 0, 1)
        mask = (alpha > 0.5).astype(np.float32)
        at = (canvas - side) // 3
        if canvas != side:
            full = cv2.resize(photo("rocket"), (canvas, canvas), interpolation=cv2.INTER_AREA)
            full[at:at + side, at:at + side] = image
            big = np.zeros((canvas, canvas), np.float32)
            big[at:at + side, at:at + side] = mask
            image, mask = full, big
        layer = from_array(np.dstack([image, np.ones(image.shape[:2], np.float32)]), dtype, "BGRA")
        if hint == "box":
            edge = side // 8
            return Split(layer, box=[at + edge, at + edge, at + side - edge, at + side - edge])
        options = {"alpha_mode": "mask"} if hint == "alpha" else {}
        return Split(layer, mask=from_array(mask, "u8", "L"), options=options)

    models = ModelManager()
    run_job(message(256, 256), lambda *a: None, models)  # numba kernels compiled or loaded from the cache
    job = message(canvas, side)
    gc.collect()
    start = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS
    t = time.perf_counter()
    run_job(job, lambda *a: None, models)
    return {"peak": _status("VmHWM") - start, "estimate": estimate_job(job).nbytes, "seconds": time.perf_counter() - t}


def span(rows: list[dict], key: str, scale: float = 2**20, digits: int = 0) -> str:
    values = [r[key] / scale for r in rows]
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="leave out the 4096x4096 scenes")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every estimate is within 2x")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a scene, in the child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*json.loads(args.one))))
        return 0
    if not os.path.exists("/proc/self/clear_refs"):
        print("needs Linux (/proc/self/clear_refs resets the peak RSS)")
        return 1
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d')}")
    print(f"{'scene':<26} {'canvas':>9} {'measured':>9} {'estimate':>9} {'ratio':>6} {'time':>6}")
    worst = 1.0
    by_canvas: dict[tuple[int, int], list[dict]] = {}
    for name, canvas, side, hair, dtype, hint in SCENES:
        if args.quick and canvas > 2048:
            continue
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps([canvas, side, hair, dtype, hint])],
                             capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        ratio = row["estimate"] / row["peak"]
        worst = max(worst, ratio, 1 / ratio)
        by_canvas.setdefault((canvas, side), []).append(row | {"ratio": ratio})
        print(f"{name:<26} {canvas:>4}^2 {row['peak'] / 2**20:>7.0f}MB {row['estimate'] / 2**20:>7.0f}MB "
              f"{ratio:>6.2f} {row['seconds']:>5.1f}s")
    for (canvas, side), rows in by_canvas.items():  # the ranges docs/benchmarks.md gives per canvas
        if len(rows) > 1:
            print(f"{canvas}^2 canvas, {side}^2 object, {len(rows)} scenes: measured {span(rows, 'peak')} MB, "
                  f"estimate {span(rows, 'estimate')} MB, ratio {span(rows, 'ratio', 1, 2)}")
    print(f"estimate within {worst:.2f}x of every measured peak (target: 2x)")
    return 1 if args.check and worst > 2.0 else 0


if __name__ == "__main__":
    sys.exit(main())
