"""The learned matting's cost on the CPU (stages/learned_matte.py, the `matting: vitmatte` option): the full-size
ViTMatte-S architecture (the product's folder layout from bench_gpu_fullsize's configs, random weights: time and
memory follow the architecture, not the weights) on an object's band at a few canvas sizes. Prints the tiles run,
the seconds and the peak RSS above the model's load, against job_memory.TILED_MODEL_BYTES (the server's allowance
for it on the CPU) and the closed form on the same trimap.

    .venv/bin/python benchmarks/bench_learned_matte.py [--sizes 1024,2048,4096] [--tile 1024]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from layeringdiff.examples import photo  # noqa: E402
from layeringdiff.imaging.matting import estimate_alpha  # noqa: E402
from layeringdiff.imaging.trimap import UNKNOWN, trimap_and_strands  # noqa: E402
from layeringdiff.job_memory import TILED_MODEL_BYTES  # noqa: E402
from layeringdiff.models import ModelConfig, ModelManager  # noqa: E402
from layeringdiff.stages import learned_matte as lm  # noqa: E402

from benchmarks import bench_gpu_fullsize as full  # noqa: E402
from benchmarks.bench_job_memory import own_status  # noqa: E402
from benchmarks.bench_layers import PeakRss  # noqa: E402


def scene(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A photo and a disc covering a third of the canvas's side, cut hard (a selection)."""
    image = cv2.resize(photo("astronaut"), (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    mask = np.zeros((size, size), np.float32)
    cv2.circle(mask, (size // 2, size // 2), size // 6, 1.0, -1)
    return image, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,2048,4096")
    parser.add_argument("--tile", type=int, default=lm.TILE)
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; tile {args.tile} px")
    with tempfile.TemporaryDirectory() as folder:
        models = Path(folder)
        full.write_configs(models)
        full.write_weights(models, "cpu", only=("vitmatte",), log=lambda text: None)
        model, processor = ModelManager(ModelConfig(device="cpu").with_models_dir(str(models))).vitmatte()
        print(f"ViTMatte-S: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters; RSS after loading "
              f"{own_status('VmRSS') >> 20} MB")
        small, disc = scene(256)
        lm.learned_matte(model, processor, small, trimap_and_strands(disc)[0])  # warm up
        for size in (int(s) for s in args.sizes.split(",")):
            image, mask = scene(size)
            trimap, firm = trimap_and_strands(mask)
            unknown = int(np.count_nonzero(trimap == UNKNOWN))
            tiles: list[float] = []
            with PeakRss() as learned:
                start = time.perf_counter()
                lm.learned_matte(model, processor, image, trimap, lambda _, f, seen=tiles: seen.append(f),
                                 tile=args.tile)
                seconds = time.perf_counter() - start
            with PeakRss() as closed:
                start = time.perf_counter()
                estimate_alpha(image, trimap, prior=mask, firm=firm)
                closed_seconds = time.perf_counter() - start
            print(f"{size}^2, band of {unknown} px: ViTMatte {len(tiles)} tiles in {seconds:.1f} s, peak RSS "
                  f"+{learned.above >> 20} MB (allowance {TILED_MODEL_BYTES['vitmatte'] >> 20} MB); closed form "
                  f"{closed_seconds:.2f} s, +{closed.above >> 20} MB")


if __name__ == "__main__":
    main()
