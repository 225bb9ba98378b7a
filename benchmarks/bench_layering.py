"""The layering stage (FBDD + HFA) on big canvases: time and peak memory of a split whose object covers most of a
large canvas, with tiny random FBDD/HFA models of the real classes (no weights needed). Prints figures.

    .venv/bin/python benchmarks/bench_layering.py [--sizes 1024,4096] [--work-size 512] [--steps 2]

FBDD runs on the object's crop at the working size (its training size, 512 px) and HFA in 512 px tiles, so the
memory follows the canvas's own arrays, not the diffusion models' activations at full size. Each size runs in a
fresh process so that its peak RSS is its own. With real weights on a GPU the model work is per working-size
crop, as here; the arrays around it are the same.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def big_canvas(size: int, radius: float = 0.35, seed: int = 0):
    """A textured canvas and a soft-edged disk of `radius` times the side (0.35: the object covers most of it)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.uniform(0, 1, (64, 64, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image + rng.normal(0, 0.03, image.shape).astype(np.float32), 0, 1)
    disk = np.zeros((size, size), np.float32)
    cv2.circle(disk, (size // 2, size // 2), int(size * radius), 1.0, -1)
    alpha = cv2.GaussianBlur(disk, (0, 0), max(1.0, size / 400))
    return np.round(image * 255) / 255, np.round(alpha * 255) / 255


def run_one(size: int, work_size: int, steps: int, radius: float = 0.35) -> dict:
    """One split in this process; returns its figures (peak RSS is this process's, imports included)."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from layeringdiff.stages.layering import FBDD, HFA, HFA_OVERLAP, HFA_TILE, fbdd_method, tile_starts
    from layeringdiff.stages.split import SplitOptions, split_layer

    from tests.models.tiny import sd2_inpaint_pipeline

    torch.manual_seed(0)
    fbdd = FBDD.from_inpainting(sd2_inpaint_pipeline())
    hfa = HFA.new(base_channels=8, levels=2)
    image, alpha = big_canvas(size, radius)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    result = split_layer(image, mask=alpha, options=SplitOptions(alpha_mode="mask", quantize=255),
                         method=fbdd_method(fbdd, hfa, steps, 0, work_size))
    seconds = time.perf_counter() - start
    a = result.foreground[..., 3:4]
    visible = a[..., 0] < 1
    stored = np.round(a * 255) / 255 * np.round(result.foreground[..., :3] * 255) / 255 + \
        (1 - np.round(a * 255) / 255) * np.round(result.background[..., :3] * 255) / 255
    x0, y0, x1, y1 = result.info["crop"]
    tiles = len(tile_starts(y1 - y0, HFA_TILE, HFA_OVERLAP)) * len(tile_starts(x1 - x0, HFA_TILE, HFA_OVERLAP))
    return {"size": size, "seconds": round(seconds, 2), "crop": result.info["crop"], "hfa_tiles": tiles,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rss_before_split_mb": round(before), "timings": result.info["timings"],
            "composition_fallback": result.info.get("composition_fallback"),
            "stored_error_255": round(float(np.abs(stored - image)[visible].max()) * 255, 3)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1024,4096")
    parser.add_argument("--work-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--radius", type=float, default=0.35, help="the object's radius / the canvas side")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.work_size, args.steps, args.radius)))
        return 0
    print(f"FBDD + HFA split, tiny random models, FBDD working size {args.work_size}, {args.steps} DDIM steps")
    for size in (int(s) for s in args.sizes.split(",")):
        proc = subprocess.run([sys.executable, __file__, "--one", str(size), "--work-size", str(args.work_size),
                               "--steps", str(args.steps), "--radius", str(args.radius)],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{size}x{size}: {r['seconds']} s, peak RSS {r['peak_rss_mb']} MB ({r['rss_before_split_mb']} MB before "
              f"the split: Python, torch, the models, the canvas), crop {r['crop']} (HFA on {r['hfa_tiles']} tiles), "
              f"stored layers recomposite within {r['stored_error_255']}/255, fallback {r['composition_fallback']}; "
              f"stages {r['timings']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
