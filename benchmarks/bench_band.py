"""The trimap's band rule on feathered selections (issue 13): for each generated scene (edge_scenes.py beside this
script; the rule was tuned on TUNING_SEEDS, these are HELD_OUT_SEEDS), the alpha error in the true edge band with the
automatic band against fixed bands of 15, 30 and 45 px. Prints a row per scene and the summary.

    .venv/bin/python benchmarks/bench_band.py [--seeds 1000-1023] [--size 512]

Target: every scene's automatic error within 1.3x of the best fixed width's.
"""

import argparse
import os
import statistics
import time

from edge_scenes import FIXED_WIDTHS, HELD_OUT_SEEDS, edge_error, edge_scene
from layeringdiff.imaging.trimap import band_radius, selection_ramp
from layeringdiff.progress import no_progress
from layeringdiff.stages.split import SplitOptions, split_alpha


def errors(seed: int, size: int) -> dict:
    scene = edge_scene(seed, size)
    row = {"seed": seed, "edge": scene.edge_width, "feather": scene.feather, "offset": scene.offset,
           "ramp": selection_ramp(scene.selection), "auto_band": band_radius(scene.selection)}
    for band in (None, *FIXED_WIDTHS):
        start = time.perf_counter()
        alpha = split_alpha(scene.image, scene.selection, None, SplitOptions(band=band), no_progress, {})
        row[band or "auto"] = edge_error(alpha, scene.alpha)
        row[f"t_{band or 'auto'}"] = time.perf_counter() - start
    row["ratio"] = row["auto"] / min(row[w] for w in FIXED_WIDTHS)
    return row


def parse_seeds(text: str) -> range:
    lo, _, hi = text.partition("-")
    return range(int(lo), int(hi or lo) + 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default=f"{HELD_OUT_SEEDS.start}-{HELD_OUT_SEEDS.stop - 1}")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    print(f"load {os.getloadavg()[0]:.2f}; alpha error x255 in the true edge band; fixed = --band N (the whole "
          f"soft ramp unknown too)")
    print("seed  edge feather offset  ramp band |   auto     15     30     45 | ratio to best fixed")
    rows = []
    for seed in parse_seeds(args.seeds):
        r = errors(seed, args.size)
        rows.append(r)
        print(f"{seed:5d} {r['edge']:5.1f} {r['feather']:6.1f} {r['offset']:6.1f} {r['ramp']:5.1f} "
              f"{r['auto_band']:4d} | {r['auto']:6.2f} {r[15]:6.2f} {r[30]:6.2f} {r[45]:6.2f} | "
              f"{r['ratio']:.2f}", flush=True)
    within = sum(r["ratio"] <= 1.3 for r in rows)
    print(f"automatic band within 1.3x of the best fixed width: {within}/{len(rows)} scenes; worst ratio "
          f"{max(r['ratio'] for r in rows):.2f}, median {statistics.median(r['ratio'] for r in rows):.2f}; mean error "
          f"auto {statistics.mean(r['auto'] for r in rows):.2f}, " + ", ".join(
              f"{w} px {statistics.mean(r[w] for r in rows):.2f}" for w in FIXED_WIDTHS))
    times = ", ".join(f"{w} px {statistics.median(r[f't_{w}'] for r in rows):.2f} s" for w in FIXED_WIDTHS)
    print(f"matting time per scene (median): auto {statistics.median(r['t_auto'] for r in rows):.2f} s, {times}; "
          f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
