"""The Krita case of issue 13 in the real Krita 5 (tests/krita/harness.py, the driver's timed_split scenario): a
4096x4096 canvas with a 2200x1800 object selected, "Split selected layer" clicked, until the layers are in the
document. Prints click-to-layers, the time of each stage as the docker shows it (reading the layer and sending,
the backend's stages, Krita's insert) and the backend's peak memory.

    .venv/bin/python benchmarks/bench_krita.py [--runs 2] [--size 4096] [--object 2200x1800]

Targets on 2 cores: <= 8 s click to layers, backend peak <= 1.5 GB. Needs krita and Xvfb (see tests/krita).
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_big import big_scene  # noqa: E402

from tests.krita.harness import krita_missing, make_home, run_krita  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--object", default="2200x1800")
    parser.add_argument("--backend-python", default=sys.executable,
                        help="the Python (or a wrapper script) the docker starts the backend with: another checkout's "
                             "backend for a before/after figure")
    args = parser.parse_args()
    if krita_missing():
        raise SystemExit(krita_missing())
    box_w, box_h = (int(v) for v in args.object.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        home, out = Path(tmp) / "home", Path(tmp) / "out"
        out.mkdir()
        make_home(home, settings={"python": args.backend_python, "autostart": True})  # the backend's default fill
        image, mask = big_scene(args.size, box_w, box_h)
        u8 = (image * 255 + 0.5).astype(np.uint8)
        bgra = np.concatenate([u8[..., ::-1], np.full(u8.shape[:2] + (1,), 255, np.uint8)], axis=-1)
        (out / "photo.bgra").write_bytes(np.ascontiguousarray(bgra).tobytes())
        (out / "mask1.u8").write_bytes((mask * 255).astype(np.uint8).tobytes())
        (out / "spec.json").write_text(json.dumps({"w": args.size, "h": args.size, "runs": args.runs}))
        del image, mask, u8, bgra
        print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.2f} (1 min); Krita: {args.size}x{args.size} canvas, "
              f"{box_w}x{box_h} object")
        report = run_krita(home, out, "timed_split", timeout=300 + 120 * args.runs)
        clicks, peaks = [], []
        for s in report.get("steps", []):
            if not s["step"].startswith("timed split"):
                continue
            clicks.append(s["click_to_layers"])
            peaks.append(s["backend_peak_mb"])
            marks, parts = s["stages"], []
            for (name, t), nxt in zip(marks, [*marks[1:], ("end", s["click_to_layers"])], strict=True):
                parts.append(f"{name} {nxt[1] - t:.2f}")
            print(f"  click to layers {s['click_to_layers']:.2f} s (reading the layer and sending "
                  f"{s['read_and_send']:.2f} s, then: {', '.join(parts)}); backend peak RSS {s['backend_peak_mb']} MB;"
                  f" load {os.getloadavg()[0]:.2f}")
        if "error" in report or not report.get("done"):
            raise SystemExit(f"Krita run failed (exit {report.get('exit_code')}): {report.get('error', '')}\n"
                             f"{report.get('log_tail', '')[-1500:]}")
        print(f"  docker said: {report['steps'][-1]['message']}")
        print(f"click to layers: {' / '.join(f'{c:.1f}' for c in clicks)} s ({len(clicks)} runs, target <= 8 s); "
              f"backend peak RSS {min(peaks) / 1024:.2f}-{max(peaks) / 1024:.2f} GB (target <= 1.5 GB); load "
              f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
