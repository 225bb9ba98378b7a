"""Model-stack benchmark: per-stage timings and peak GPU memory of Generate layered. Prints figures.

    .venv/bin/python benchmarks/bench_models.py [--models-dir DIR] [--size 1024] [--steps 30]
    .venv/bin/python benchmarks/bench_models.py --tiny     # the script itself, on tiny random models

Runs with the real weights when they are present (local folders or the Hugging Face cache) and says
which are missing otherwise. Meant for a CUDA machine; runs on CPU too (slowly with real weights).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from layeringdiff.errors import NotAvailable
from layeringdiff.models import ModelConfig, ModelManager
from layeringdiff.stages.foreground import ForegroundOptions, determine_foreground
from layeringdiff.stages.generate import GenerateParams, generate_composite
from layeringdiff.stages.split import SplitOptions, split_layer

NEEDED = ["sdxl", "grounding-dino", "sam", "vitmatte"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models-dir")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="build tiny random models and time those")
    args = parser.parse_args()
    models_dir = args.models_dir
    if args.tiny:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.models.tiny import build_all

        models_dir = tempfile.mkdtemp(prefix="tiny-models-")
        build_all(Path(models_dir))
        args.size, args.steps = min(args.size, 256), min(args.steps, 4)
    manager = ModelManager(ModelConfig.load().with_models_dir(models_dir))
    try:
        manager.require(NEEDED)
    except NotAvailable as exc:
        print(f"cannot benchmark: {exc.text}\n  {exc.detail}")
        for row in manager.status():
            print(f"  {row['model']:<17} {row['state']:<8} {row['source']}")
        return 0
    import torch

    device = manager.device()
    print(f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else "")
          + f", dtype {manager.dtype()}, torch {torch.__version__}")
    t = time.perf_counter()
    pipe = manager.sdxl()
    print(f"load sdxl: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    manager.grounding_dino(), manager.sam(), manager.vitmatte()
    print(f"load grounding-dino + sam + vitmatte: {time.perf_counter() - t:.1f} s")
    timings: dict[str, list[float]] = {}
    for run in range(args.runs + 1):  # the first run warms up kernels and is not counted
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        marks = {}
        t0 = time.perf_counter()
        params = GenerateParams("a red fox sitting in a snowy forest, detailed photo", args.size, args.size,
                                args.steps, seed=run)
        composite = generate_composite(pipe, params)
        marks["generate"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            alpha, _ = determine_foreground(manager, composite, "a red fox", ForegroundOptions())
        except NotAvailable as exc:  # e.g. nothing detected in this sample
            print(f"run {run}: foreground stage: {exc}")
            continue
        marks["foreground (dino+sam+vitmatte)"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        split_layer(composite, mask=alpha, options=SplitOptions(alpha_mode="mask", quantize=255))
        marks["layering (classical)"] = time.perf_counter() - t2
        if device == "cuda":
            marks["peak VRAM GB"] = torch.cuda.max_memory_allocated() / 2**30
        if run:
            for k, v in marks.items():
                timings.setdefault(k, []).append(v)
    print(f"{args.size}x{args.size}, {args.steps} steps, median of {args.runs} runs:")
    for k, v in timings.items():
        unit = "" if "GB" in k else " s"
        print(f"  {k:<34} {statistics.median(v):8.2f}{unit}")
    if not timings:
        print("  no complete run")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
