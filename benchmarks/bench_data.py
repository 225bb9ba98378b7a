"""Training-data throughput: shuffled samples per second as the trainer reads them (composite, alpha, F, B as
float32 batches: 8-bit samples through a DataLoader, converted and composed as the trainer does, here on the CPU
in the main process, on a GPU machine on the GPU), at 512 px, with the page cache cold and then warm.

    .venv/bin/python benchmarks/bench_data.py [--count 96] [--size 512] [--num-workers 2] [--data FOLDER]

Without --data it first writes --count samples (`layeringdiff dataset`'s code) into a temporary folder. "Cold":
the dataset's files are dropped from the page cache first (posix_fadvise DONTNEED; the share of their pages still
cached is printed, measured with mincore), so the figure includes reading from the disk.
"""

import argparse
import ctypes
import mmap
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))


def cached_share(path: Path) -> float:
    """The share of a file's pages in the page cache (mmap without reading, then mincore)."""
    size = path.stat().st_size
    if size == 0:
        return 1.0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    page = os.sysconf("SC_PAGE_SIZE")
    pages = (size + page - 1) // page
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return float("nan")
        ok = libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) == 0
        libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec) / pages if ok else float("nan")


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_rate(dataset, batch_size: int, workers: int, samples: int) -> float:
    import torch
    from layeringdiff.train.fbdd import _batch_tensors, data_loader

    loader = data_loader(dataset, batch_size, seed=0, num_workers=workers)
    seen, start = 0, time.perf_counter()
    while seen < samples:
        for batch in loader:
            tensors = _batch_tensors(batch, "cpu")  # float32 C, alpha, F, B, as the trainer gets them
            assert tensors["composite"].dtype == torch.float32
            seen += tensors["composite"].shape[0]
            if seen >= samples:
                break
    return seen / (time.perf_counter() - start)


def cpu_cost(dataset) -> float:
    """CPU seconds per shuffled sample in this process, independent of other load on the machine."""
    import numpy as np
    import torch
    from layeringdiff.train.fbdd import _batch_tensors

    order = np.random.default_rng(0).permutation(len(dataset))[:32]
    torch.set_num_threads(1)
    start = time.process_time()
    for i in order:
        sample = dataset.sample_u8(int(i))
        _batch_tensors({k: torch.from_numpy(v)[None] for k, v in sample.items()}, "cpu")
    return (time.process_time() - start) / len(order)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", help="an existing dataset folder (default: write one)")
    parser.add_argument("--count", type=int, default=96)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--codec", choices=("png", "raw"), default="png", help="how a new dataset is written")
    args = parser.parse_args()
    from layeringdiff.train.dataset import DatasetConfig, LayerDataset, StoredDataset, write_dataset

    folder = Path(args.data or tempfile.mkdtemp(prefix="bench-data-"))
    if not args.data:
        start = time.perf_counter()
        write_dataset(LayerDataset(DatasetConfig(size=args.size, length=args.count)), folder, args.num_workers,
                      codec=args.codec)
        made = time.perf_counter() - start
        print(f"wrote {args.count} samples at {args.size} px in {made:.1f} s ({args.count / made:.1f} samples/s "
              f"with {args.num_workers} workers)")
    dataset = StoredDataset(folder)
    files = sorted(folder.glob("*.pack")) + sorted(folder.glob("*.idx"))
    total = sum(f.stat().st_size for f in files)
    side = dataset.manifest["config"]["size"]
    print(f"{len(dataset)} samples at {side} px ({dataset.manifest['layout']}): "
          f"{total / len(dataset) / 1e6:.2f} MB on disk per sample "
          f"(float32 composite + alpha + F + B would be {side * side * 10 * 4 / 1e6:.1f} MB)")
    print(f"{os.cpu_count()} CPU cores, {args.num_workers} loader workers, batch {args.batch_size}", flush=True)
    cost = cpu_cost(dataset)
    print(f"CPU time per sample (read, decode, convert to float32 and compose; one process): {cost * 1e3:.1f} ms, "
          f"so about {2 / cost:.0f} samples/s on 2 free cores", flush=True)
    for state in ("cold", "warm"):
        if state == "cold":
            for f in files:
                drop_cache(f)
        share = sum(cached_share(f) * f.stat().st_size for f in files) / total
        rate = read_rate(dataset, args.batch_size, args.num_workers, len(dataset) * (1 if state == "cold" else 3))
        print(f"shuffled reading, page cache {state} ({share:.0%} of the files cached before): {rate:.1f} samples/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
