"""GPU smoke test of training: a few real FBDD and HFA steps on tiny models, timed. Prints figures.

    .venv/bin/python benchmarks/smoke_train_gpu.py [--steps 20] [--precision bf16]

Needs CUDA (says so and stops otherwise). Multi-GPU: `accelerate launch benchmarks/smoke_train_gpu.py`.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--precision", choices=("no", "fp16", "bf16"), default="bf16")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this smoke test is for a GPU machine (the CPU path is covered by the test suite)")
        return 0
    from layeringdiff.train.dataset import DatasetConfig, LayerDataset
    from layeringdiff.train.fbdd import FBDDTrainConfig, train_fbdd
    from layeringdiff.train.hfa import HFATrainConfig, train_hfa

    from tests.models.tiny import build_all

    work = Path(tempfile.mkdtemp(prefix="smoke-train-"))
    build_all(work / "models", only=("sd2-inpaint",))
    data = LayerDataset(DatasetConfig(size=args.size, length=16))
    print(f"device {torch.cuda.get_device_name()}, precision {args.precision}, {args.size}px, {args.steps} steps")
    for name, run in (
        ("fbdd", lambda: train_fbdd(FBDDTrainConfig(init=str(work / "models" / "sd2-inpaint"), out=str(work / "fbdd"),
                                                    steps=args.steps, batch_size=4, lr=1e-4,
                                                    mixed_precision=args.precision, gradient_checkpointing=True,
                                                    checkpoint_every=args.steps), data)),
        ("hfa", lambda: train_hfa(HFATrainConfig(out=str(work / "hfa"), steps=args.steps, batch_size=4,
                                                 mixed_precision=args.precision, checkpoint_every=args.steps), data)),
    ):
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        t = time.perf_counter()
        export = run()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        print(f"{name}: {seconds:.1f} s ({seconds / args.steps * 1000:.0f} ms/step incl. start-up), "
              f"peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB -> {export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
