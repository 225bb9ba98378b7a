"""GPU smoke test of training: real FBDD (with EMA) and HFA steps on tiny models, timed. Prints figures.

    .venv/bin/python benchmarks/smoke_train_gpu.py [--steps 50] [--precision bf16] [--ema 0.999]
    accelerate launch --multi_gpu --num_processes 2 benchmarks/smoke_train_gpu.py     # several GPUs

Needs CUDA (says so and stops otherwise); `--cpu` runs it anyway to check the script itself (figures then
mean nothing; on the CPU use --precision no).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--ema", type=float, default=0.999, help="EMA decay of the FBDD weights (0: off)")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--precision", choices=("no", "fp16", "bf16"), default="bf16")
    parser.add_argument("--cpu", action="store_true", help="run without CUDA (to check the script)")
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and not args.cpu
    if args.cpu:  # accelerate (and so the training loops) keep to the CPU even where a GPU is
        os.environ["ACCELERATE_USE_CPU"] = "true"
    elif not cuda:
        print("no CUDA device: this smoke test is for a GPU machine (the CPU path is covered by the test suite)")
        return 0
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list
    from layeringdiff.train.checkpoints import make_accelerator
    from layeringdiff.train.dataset import DatasetConfig, LayerDataset
    from layeringdiff.train.fbdd import FBDDTrainConfig, train_fbdd
    from layeringdiff.train.hfa import HFATrainConfig, train_hfa

    from tests.models.tiny import build_all

    make_accelerator(args.precision, Path(tempfile.gettempdir()))  # forms the process group (gloo on CPU)
    state = PartialState()
    # one fresh run folder shared by all processes of a multi-GPU launch
    work = [tempfile.mkdtemp(prefix="smoke-train-") if state.is_main_process else None]
    broadcast_object_list(work)
    work_dir = Path(work[0])
    with state.main_process_first():
        build_all(work_dir / "models", only=("sd2-inpaint",))
    data = LayerDataset(DatasetConfig(size=args.size, length=16))
    say = print if state.is_main_process else (lambda *a, **k: None)
    device = torch.cuda.get_device_name() if cuda else "cpu"
    say(f"device {device} x {state.num_processes}, precision {args.precision}, {args.size}px, {args.steps} steps, "
        f"EMA {args.ema or 'off'}")
    for name, run in (
        ("fbdd", lambda: train_fbdd(FBDDTrainConfig(init=str(work_dir / "models" / "sd2-inpaint"),
                                                    out=str(work_dir / "fbdd"), steps=args.steps, batch_size=4,
                                                    lr=1e-4, mixed_precision=args.precision,
                                                    gradient_checkpointing=True, checkpoint_every=args.steps,
                                                    ema_decay=args.ema, num_workers=args.num_workers), data)),
        # HFA on the layers the FBDD just trained decodes, as a split makes them (the paper's inputs)
        ("hfa", lambda: train_hfa(HFATrainConfig(out=str(work_dir / "hfa"), fbdd=str(work_dir / "fbdd" / "export" /
                                                                                   "fbdd"),
                                                 fbdd_steps=4, steps=args.steps, batch_size=4,
                                                 mixed_precision=args.precision, checkpoint_every=args.steps,
                                                 num_workers=args.num_workers), data)),
    ):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
        t = time.perf_counter()
        export = run()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        peak = f"peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if cuda else "no VRAM figure on the CPU"
        say(f"{name}: {seconds:.1f} s ({seconds / args.steps * 1000:.0f} ms/step incl. start-up), {peak} -> {export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
