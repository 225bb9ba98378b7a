"""A job's measured peak memory beside the server's estimate of it (backend/layeringdiff/job_memory.py).

    .venv/bin/python benchmarks/bench_job_memory.py [--quick] [--check] [--stages] [--only TEXT]

Each scene runs in a fresh process through the server's own job code (pipeline.run_job on the protocol
message the server would receive); the peak is the RSS high-water mark above the RSS when the job starts.
Besides the usual scenes (an object filling its canvas, a small object on a big one) it runs the shapes that
stress what drives the memory other than the canvas: masks whose unknown band is most of the box (noise, a
feathered ramp, many islands), masks whose bounding box is the canvas but whose object is tiny (two corner
pixels, a thin line), long strips, and a float32 layer. Run it whenever the pipeline changes and update
job_memory's constants. --check exits with 1 unless every estimate is within 1.25x of its measured peak;
--quick leaves out the scenes over 2048^2 pixels; --stages prints each stage's own peak (above the job's start)
under its scene; --only runs the scenes whose name contains TEXT.
"""

import argparse
import json
import os
import subprocess
import sys
import time

TARGET = 1.25

# name, width, height, mask kind, layer dtype, hint, parameters of the kind
# object: (object side, hair strands) of benchmark's soft-alpha object, pasted a third of the way in
SCENES = [
    ("object, mask", 1024, 1024, "object", "u8", "mask", (1024, 10)),
    ("object, box", 1024, 1024, "object", "u8", "box", (1024, 10)),
    ("object, mask", 2048, 2048, "object", "u8", "mask", (2048, 10)),
    ("hair, mask", 2048, 2048, "object", "u8", "mask", (2048, 40)),
    ("object, box", 2048, 2048, "object", "u8", "box", (2048, 10)),
    ("object, f32 layer", 2048, 2048, "object", "f32", "mask", (2048, 10)),
    ("object, mask alpha", 2048, 2048, "object", "u8", "alpha", (2048, 10)),
    ("object, mask", 4096, 4096, "object", "u8", "mask", (4096, 10)),
    ("512 object on the canvas", 4096, 4096, "object", "u8", "mask", (512, 10)),
    # the shapes
    ("noise mask", 1024, 1024, "noise", "u8", "mask", ()),
    ("strip, long object", 16384, 64, "strip", "u8", "mask", ()),
    ("two corner pixels", 2048, 2048, "corners", "u8", "mask", ()),
    ("two corner pixels", 3072, 3072, "corners", "u8", "mask", ()),
    ("two corner pixels", 4096, 4096, "corners", "u8", "mask", ()),
    # more shapes of the same kinds
    ("noise mask, f32 layer", 1024, 1024, "noise", "f32", "mask", ()),
    ("noise mask", 2048, 2048, "noise", "u8", "mask", ()),
    ("islands 4px every 16px", 2048, 2048, "islands", "u8", "mask", (4, 16)),
    ("diagonal line 1px", 4096, 4096, "line", "u8", "mask", ()),
    ("feathered ramp", 2048, 2048, "ramp", "u8", "mask", ()),
    ("tall strip, long object", 64, 16384, "strip", "u8", "mask", ()),
    ("512 object, f32 layer", 4096, 4096, "object", "f32", "mask", (512, 10)),  # the result's wide frames
]


def own_status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS


def scene_arrays(width: int, height: int, kind: str, params: list) -> tuple:
    """(image HxWx3, mask HxW, object box or None) float32 in [0,1] for a scene."""
    import cv2
    import numpy as np
    from layeringdiff.examples import photo, soft_alpha
    from layeringdiff.imaging.compose import compose

    if kind == "object":
        side, hair = params
        canvas = width
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
        edge = side // 8
        return image, mask, (at + edge, at + edge, at + side - edge, at + side - edge)
    image = cv2.resize(photo("rocket"), (width, height), interpolation=cv2.INTER_AREA)
    mask = np.zeros((height, width), np.float32)
    if kind == "noise":  # every pixel 0 or 255 at random: the band is the whole canvas
        mask[:] = np.random.default_rng(0).integers(0, 2, (height, width))
    elif kind == "corners":  # the selection's bounding box is the canvas, its object two pixels
        mask[0, 0] = mask[-1, -1] = 1.0
    elif kind == "strip":  # an object (a soft ellipse) along most of a long strip
        big = np.zeros((4 * height, 4 * width), np.float32)
        cv2.ellipse(big, (2 * width, 2 * height), (int(1.6 * width), int(1.6 * height)), 0, 0, 360, 1.0, -1)
        alpha = cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA)
        fg = cv2.resize(photo("chelsea"), (width, height), interpolation=cv2.INTER_AREA)
        image = np.clip(compose(alpha, fg, image), 0, 1)
        mask = (alpha > 0.5).astype(np.float32)
    elif kind == "islands":  # many small connected components
        size, every = params
        for dy in range(size):
            for dx in range(size):
                mask[every // 2 + dy::every, every // 2 + dx::every] = 1.0
    elif kind == "line":  # a one-pixel diagonal from corner to corner
        cv2.line(mask, (0, 0), (width - 1, height - 1), 1.0, 1)
    elif kind == "ramp":  # a feathered selection over the whole canvas: 0 at the left to 1 at the right
        mask[:] = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    else:
        raise ValueError(kind)
    return image, mask, None


def measure(scene: list, stages: bool) -> dict:
    """In this (fresh) process: the job's peak RSS above its start (and each stage's with `stages`)."""
    import ctypes
    import gc

    import numpy as np
    from layering_protocol import Split
    from layeringdiff.job_memory import estimate_job, split_work
    from layeringdiff.models import ModelManager
    from layeringdiff.pipeline import run_job
    from layeringdiff.wire import from_array

    _, width, height, kind, dtype, hint, params = scene

    def message(width: int, height: int, kind: str, params: list) -> Split:
        image, mask, box = scene_arrays(width, height, kind, params)
        layer = from_array(np.dstack([image, np.ones(image.shape[:2], np.float32)]), dtype, "BGRA")
        if hint == "box":
            return Split(layer, box=list(box))
        options = {"alpha_mode": "mask"} if hint == "alpha" else {}
        return Split(layer, mask=from_array(mask, "u8", "L"), options=options)

    models = ModelManager()
    run_job(message(256, 256, "object", [256, 10]), lambda *a: None, models)  # numba kernels compiled or cached
    job = message(width, height, kind, params)
    t = time.perf_counter()
    estimate = estimate_job(job).nbytes
    estimate_seconds = time.perf_counter() - t
    work = split_work(job)
    gc.collect()
    # glibc keeps freed memory (the warm-up's, the message's makings) for reuse: handed back to the system here, or a
    # job reusing it would show a lower peak than its own, by as much as it happened to find
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    start = own_status("VmRSS")
    peaks: dict[str, int] = {}
    current = ["start"]

    def progress(stage: str, fraction: float) -> None:
        if stages and stage != current[0]:
            peaks[current[0]] = max(peaks.get(current[0], 0), own_status("VmHWM") - start)
            current[0] = stage
            reset_peak()

    reset_peak()
    t = time.perf_counter()
    out = run_job(job, progress, models)
    seconds = time.perf_counter() - t
    peak = own_status("VmHWM") - start
    peaks[current[0]] = max(peaks.get(current[0], 0), peak)
    split = out.info
    del out
    return {"peak": max(peaks.values()) if stages else peak, "estimate": estimate, "seconds": seconds,
            "estimate_seconds": estimate_seconds, "stages": peaks, "work": vars(work) if work else None,
            "unknown": round(split.get("unknown_fraction", 0) * width * height),
            "crop": (split["crop"][2] - split["crop"][0]) * (split["crop"][3] - split["crop"][1])}


def span(rows: list[dict], key: str, scale: float = 2**20, digits: int = 0) -> str:
    values = [r[key] / scale for r in rows]
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="leave out the scenes over 2048x2048 pixels")
    parser.add_argument("--check", action="store_true", help=f"exit 1 unless every estimate is within {TARGET}x")
    parser.add_argument("--stages", action="store_true", help="print each stage's own peak under its scene")
    parser.add_argument("--only", help="run only the scenes whose name contains this")
    parser.add_argument("--json", help="also write the rows (with what the estimate read) to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a scene, in the child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(json.loads(args.one), args.stages)))
        return 0
    if not os.path.exists("/proc/self/clear_refs"):
        print("needs Linux (/proc/self/clear_refs resets the peak RSS)")
        return 1
    print(f"cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d')}")
    print(f"{'scene':<26} {'canvas':>11} {'measured':>9} {'estimate':>9} {'ratio':>6} {'time':>6}")
    worst, worst_name = 1.0, ""
    results: list[dict] = []
    by_canvas: dict[tuple, list[dict]] = {}
    for scene in SCENES:
        name, width, height, kind, dtype, hint, params = scene
        if (args.quick and width * height > 2048 * 2048) or (args.only and args.only not in name):
            continue
        command = [sys.executable, __file__, "--one", json.dumps(scene)] + (["--stages"] if args.stages else [])
        out = subprocess.run(command, capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-4000:])
            out.check_returncode()
        row = json.loads(out.stdout.strip().splitlines()[-1])
        ratio = row["peak"] / row["estimate"]  # measured / estimate: above 1, the estimate was too low
        results.append({"scene": scene} | row)
        if max(ratio, 1 / ratio) > worst:
            worst, worst_name = max(ratio, 1 / ratio), f"{name}, {width}x{height}"
        if kind == "object":
            by_canvas.setdefault((width, params[0]), []).append(row | {"ratio": ratio})
        print(f"{name:<26} {f'{width}x{height}':>11} {row['peak'] / 2**20:>7.0f}MB {row['estimate'] / 2**20:>7.0f}MB "
              f"{ratio:>6.2f} {row['seconds']:>5.1f}s", flush=True)
        if args.stages:
            print("    " + ", ".join(f"{stage} {peak / 2**20:.0f}" for stage, peak in row["stages"].items()))
            print(f"    split: unknown {row['unknown']}, crop {row['crop']}; estimate read in "
                  f"{row['estimate_seconds'] * 1000:.0f} ms: {row['work']}")
    for (canvas, side), rows in by_canvas.items():  # the ranges docs/benchmarks.md gives per canvas
        if len(rows) > 1:
            print(f"{canvas}^2 canvas, {side}^2 object, {len(rows)} scenes: measured {span(rows, 'peak')} MB, "
                  f"estimate {span(rows, 'estimate')} MB, ratio {span(rows, 'ratio', 1, 2)}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    print(f"measured / estimate: worst {worst:.2f}x ({worst_name}; target: within {TARGET}x either way)")
    return 1 if args.check and worst > TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
