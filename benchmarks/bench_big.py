"""Big-canvas benchmark (issue 13). Prints figures.

    .venv/bin/python benchmarks/bench_big.py [--case cli|backend] [--fill texture|smooth|lama] [--runs N]
        [--size 4096] [--object WxH] [--keep DIR] [--format ora|psd]

--case cli (default object 2200x2750): the real `layeringdiff split` process on a 4096x4096 PNG and its mask, wall
time and peak RSS, then the same work in one process stage by stage (reading, each split stage, writing); `--format
psd` writes the layered Photoshop file instead of the .ora.
--case backend (default object 2200x1800, the Krita case without Krita): a real `layeringdiff serve` process gets
the layer (u8 BGRA) and selection (u8) as the plugin sends them; time from sending to the result in hand (transfer
both ways included), the split's stage times, and the server's peak RSS (VmHWM). benchmarks/bench_krita.py runs
the same case in the real Krita.

Targets on 2 cores: CLI <= 12 s wall; Krita case <= 8 s click to layers, backend peak <= 1.5 GB. Run it with `nice`
on a shared machine and give the load (printed) with the figures.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def textured_background(size: int, seed: int = 0) -> np.ndarray:
    """A photo (rocket) at canvas size with a fine photographed texture (gravel) over it: detail at every scale,
    as a painting or photo at 4096 px has (an upscaled photo alone would be unrealistically smooth)."""
    from layeringdiff.examples import photo

    base = cv2.resize(photo("rocket"), (size, size), interpolation=cv2.INTER_CUBIC)
    grain = photo("gravel")[..., 0]
    reps = -(-size // grain.shape[0])
    grain = np.tile(grain, (reps, reps))[:size, :size]
    grain = (grain - grain.mean()) / (grain.std() + 1e-6)
    return np.clip(base * (1.0 + 0.12 * grain[..., None]), 0.0, 1.0).astype(np.float32)


def object_alpha(size: int, box_w: int, box_h: int, seed: int = 0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A soft object filling a box_w x box_h box in the canvas's centre: an opaque body (ellipse), a soft rim and
    hair-like strands, drawn at quarter size and brought up (so its edges are soft as a photo's)."""
    rng = np.random.default_rng(seed)
    s = 4
    h, w = size // s, size // s
    small = np.zeros((h, w), np.float32)
    cy, cx = h // 2, w // 2
    ay, ax = int(box_h / s / 2 * 0.92), int(box_w / s / 2 * 0.92)
    cv2.ellipse(small, (cx, cy), (ax, ay), 0, 0, 360, 1.0, -1)
    for _ in range(60):
        t = rng.uniform(0, 2 * np.pi)
        r0 = np.array([cx + ax * 0.95 * np.cos(t), cy + ay * 0.95 * np.sin(t)])
        d = np.array([np.cos(t), np.sin(t)]) * rng.uniform(0.04, 0.08) * (box_w + box_h) / s
        pts = np.int32([r0, r0 + d * 0.5 + rng.normal(0, 3, 2), r0 + d])
        cv2.polylines(small, [pts], False, float(rng.uniform(0.6, 1.0)), thickness=1)
    alpha = cv2.GaussianBlur(cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR), (0, 0), 1.5)
    x0, y0 = (size - box_w) // 2, (size - box_h) // 2
    return np.clip(alpha, 0.0, 1.0), (x0, y0, x0 + box_w, y0 + box_h)


def big_scene(size: int, box_w: int, box_h: int) -> tuple[np.ndarray, np.ndarray]:
    """(image HxWx3, hard mask HxW): the object composited over the textured background."""
    from layeringdiff.examples import photo

    bg = textured_background(size)
    alpha, (x0, y0, x1, y1) = object_alpha(size, box_w, box_h)
    fg = np.empty_like(bg)
    fg[:] = bg
    fg[y0:y1, x0:x1] = cv2.resize(photo("chelsea"), (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)
    a = alpha[..., None]
    image = a * fg + (1.0 - a) * bg
    return np.clip(image, 0.0, 1.0).astype(np.float32), (alpha > 0.5).astype(np.float32)


def write_inputs(folder: Path, size: int, box_w: int, box_h: int) -> tuple[Path, Path]:
    image, mask = big_scene(size, box_w, box_h)
    img_path, mask_path = folder / "big.png", folder / "big_mask.png"
    Image.fromarray((image * 255 + 0.5).astype(np.uint8)).save(img_path, compress_level=1)
    Image.fromarray((mask * 255).astype(np.uint8)).save(mask_path, compress_level=1)
    return img_path, mask_path


def run_cli(img: Path, mask: Path, out: Path, fill: str) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of one `layeringdiff split` process, and its summary line."""
    cmd = [sys.executable, "-m", "layeringdiff", "split", str(img), "--mask", str(mask), "-o", str(out),
           "--fill", fill]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stderr = proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"layeringdiff split failed ({proc.returncode}):\n{stderr}")
    summary = [line for line in stderr.splitlines() if line.startswith("split ")]
    return wall, usage.ru_maxrss / 1024, summary[-1] if summary else ""


def stages(img: Path, mask: Path, out: Path, fill: str) -> None:
    """In this process: reading, the split's stages, writing, as `layeringdiff split` does them."""
    from layeringdiff.cli import main
    from layeringdiff.io import images, ora, psd
    from layeringdiff.stages import split

    marks: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                marks[name] = marks.get(name, 0.0) + time.perf_counter() - t
        return wrapper

    result_info: dict = {}
    original_split = split.split_layer

    def split_layer(*args, **kwargs):
        result = original_split(*args, **kwargs)
        result_info.update(result.info)
        return result

    images.load_image = timed("read image", images.load_image)
    images.load_mask = timed("read mask", images.load_mask)
    split.split_layer = timed("split", split_layer)
    ora.write_ora = timed("write .ora", ora.write_ora)
    psd.write_psd = timed("write .psd", psd.write_psd)
    images.save_png = timed("write PNGs", images.save_png)
    start = time.perf_counter()
    main(["split", str(img), "--mask", str(mask), "-o", str(out), "--fill", fill, "-q"])
    total = time.perf_counter() - start
    for name, t in result_info.get("timings", {}).items():
        print(f"  split stage {name:<12} {t:6.2f} s")
    for name, t in marks.items():
        print(f"  {name:<18} {t:6.2f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    band = result_info.get("unknown_fraction", 0)
    print(f"  total in one process {total:6.2f} s, peak RSS {peak:.0f} MB; unknown band {band:.1%} of the image")


def vm_hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def backend_case(size: int, box_w: int, box_h: int, fill: str, runs: int) -> None:
    """The Krita case without Krita: the plugin's request to a real backend process."""
    from layering_protocol import Result, Split
    from layeringdiff.client import Client
    from layeringdiff.wire import from_array

    image, mask = big_scene(size, box_w, box_h)
    layer = from_array(np.dstack([image, np.ones(image.shape[:2], np.float32)]), "u8", "BGRA")
    selection = from_array(mask[..., None], "u8", "L")
    del image, mask
    print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f} (1 min); backend: {size}x{size} layer, "
          f"{box_w}x{box_h} object, fill {fill}")
    proc = subprocess.Popen([sys.executable, "-m", "layeringdiff", "serve"], stdout=subprocess.PIPE, text=True)
    try:
        endpoint = proc.stdout.readline().split()[1]
        with Client(endpoint) as client:
            warm = Split(from_array(np.full((64, 64, 4), 0.5, np.float32), "u8", "BGRA"),
                         mask=from_array(np.pad(np.ones((32, 32, 1), np.float32), ((16, 16), (16, 16), (0, 0))),
                                         "u8", "L"), options={"fill": fill})
            client.run(warm, timeout=600)  # numba kernels from the cache
            idle = vm_hwm_mb(proc.pid)
            for _ in range(runs):
                start = time.perf_counter()
                final, _ = client.run(Split(layer, mask=selection, options={"fill": fill}), timeout=600)
                wall = time.perf_counter() - start
                if not isinstance(final.message, Result):
                    raise SystemExit(f"the backend answered {final.message}")
                info = final.message.info
                stages_text = ", ".join(f"{k} {v:.2f}" for k, v in info.get("timings", {}).items())
                print(f"  request to layers in hand: {wall:.2f} s (split {sum(info['timings'].values()):.2f} s: "
                      f"{stages_text}); server peak RSS {vm_hwm_mb(proc.pid):.0f} MB (idle {idle:.0f} MB); "
                      f"load {os.getloadavg()[0]:.2f}")
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", default="cli", choices=("cli", "backend"))
    parser.add_argument("--fill", default="texture", choices=("texture", "smooth", "lama"))
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--object", help="object box WxH in pixels (default 2200x2750 cli, 2200x1800 backend)")
    parser.add_argument("--keep", help="folder for the inputs and outputs (default: a temporary one)")
    parser.add_argument("--format", default="ora", choices=("ora", "psd"), help="the CLI's layered file")
    parser.add_argument("--stages-of", nargs=3, metavar=("IMAGE", "MASK", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stages_of:
        stages(*map(Path, args.stages_of), args.fill)
        return
    box_w, box_h = (int(v) for v in (args.object or ("2200x2750" if args.case == "cli" else "2200x1800"))
                    .lower().split("x"))
    if args.case == "backend":
        backend_case(args.size, box_w, box_h, args.fill, args.runs)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        img, mask = write_inputs(folder, args.size, box_w, box_h)
        print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f} (1 min); {args.size}x{args.size} image, "
              f"{box_w}x{box_h} object, fill {args.fill}")
        # numba kernels from the cache, files in the page cache
        run_cli(img, mask, folder / f"warm.{args.format}", args.fill)
        walls, peaks = [], []
        for _ in range(args.runs):
            wall, peak, summary = run_cli(img, mask, folder / f"big.{args.format}", args.fill)
            walls.append(wall)
            peaks.append(peak)
            print(f"  CLI run: {wall:.2f} s wall, peak RSS {peak:.0f} MB ({summary})")
        print(f"layeringdiff split (CLI) {args.size}x{args.size}, {box_w}x{box_h} object: median "
              f"{statistics.median(walls):.2f} s wall (target <= 12 s), peak RSS {max(peaks):.0f} MB; load now "
              f"{os.getloadavg()[0]:.2f}")
        print("the same in one process, stage by stage:")
        subprocess.run([sys.executable, __file__, "--fill", args.fill, "--stages-of", str(img), str(mask),
                        str(folder / f"stages.{args.format}")], check=True)


if __name__ == "__main__":
    main()
