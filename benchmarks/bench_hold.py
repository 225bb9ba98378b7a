"""The matting's hold of a hard hint's half line (imaging/matting.py, HOLD_*), on and off:

- hard masks drawn off the object's edge (edge_scenes.py's held-out scenes, the selection cut at 0.5 instead of
  feathered: edges 1-21 px, 0-6 px off): the alpha error in the true edge band (/255), with the hold, without it,
  and with it but no agreement test; and the agreement the test measured (held from HOLD_AGREEMENT). The hold must
  not cost these anything;
- `--labels`: bench_layers.py's label scenes (exact labels, furry edges): the soft-band error's median and the
  objects within 12/255, and the worst alpha IoU, with and without it.

    .venv/bin/python benchmarks/bench_hold.py [--seeds 1000-1023] [--size 512] [--labels] [--scenes 6] [--seed 0]
"""

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np
from edge_scenes import HELD_OUT_SEEDS, edge_error, edge_scene
from layeringdiff.imaging import matting
from layeringdiff.imaging.trimap import UNKNOWN, trimap_and_strands
from layeringdiff.progress import no_progress
from layeringdiff.stages.split import SplitOptions, split_alpha

NEVER = 2.0  # an agreement no hint reaches: the hold off
ALWAYS = -1.0  # one every hint reaches: the hold without its agreement test


def alpha_with(image: np.ndarray, mask: np.ndarray, agreement: float) -> np.ndarray:
    matting.HOLD_AGREEMENT = agreement
    return split_alpha(image, mask, None, SplitOptions(), no_progress, {})


def off_the_edge(seeds: range, size: int, agreement: float) -> None:
    print("seed  edge offset agreement |   held   free  always")
    rows = []
    for seed in seeds:
        scene = edge_scene(seed, size)
        mask = (scene.selection >= 0.5).astype(np.float32)
        free = alpha_with(scene.image, mask, NEVER)
        trimap, _ = trimap_and_strands(mask)
        agrees = matting.hint_agreement(free, mask >= 0.5, trimap == UNKNOWN)
        row = {"held": edge_error(alpha_with(scene.image, mask, agreement), scene.alpha),
               "free": edge_error(free, scene.alpha),
               "always": edge_error(alpha_with(scene.image, mask, ALWAYS), scene.alpha)}
        rows.append(row)
        print(f"{seed:5d} {scene.edge_width:5.1f} {scene.offset:6.1f} {agrees:9.2f} | {row['held']:6.1f} "
              f"{row['free']:6.1f} {row['always']:7.1f}", flush=True)
    print("median: " + ", ".join(f"{k} {statistics.median(r[k] for r in rows):.1f}" for k in ("held", "free", "always"))
          + f"; scenes the hold made worse by more than 1/255: {sum(r['held'] > r['free'] + 1 for r in rows)} of "
          f"{len(rows)}")


def labels(scenes: int, size: int, seed: int, agreement: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.bench_layers import measure, scene

    for name, value in (("held", agreement), ("free", NEVER)):
        matting.HOLD_AGREEMENT = value
        rng = np.random.default_rng(seed)
        bands, worst, times = [], 1.0, []
        for _ in range(scenes):
            r = measure(scene(rng, size, int(rng.integers(3, 6))))
            bands += [o["band"] for o in r["objects"]]
            worst = min([worst] + [o["iou"] for o in r["objects"]])
            times.append(r["time"])
        print(f"{name}: soft-band error median {statistics.median(bands):.1f}/255, {sum(b <= 12 for b in bands)} of "
              f"{len(bands)} objects within 12/255, worst alpha IoU {worst:.3f}; time per scene (median) "
              f"{statistics.median(times):.2f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=f"{HELD_OUT_SEEDS.start}-{HELD_OUT_SEEDS.stop - 1}")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--labels", action="store_true", help="bench_layers.py's label scenes instead")
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    agreement = matting.HOLD_AGREEMENT
    print(f"load {os.getloadavg()[0]:.2f}; HOLD_AGREEMENT {agreement}")
    if args.labels:
        labels(args.scenes, args.size, args.seed, agreement)
    else:
        lo, _, hi = args.seeds.partition("-")
        off_the_edge(range(int(lo), int(hi or lo) + 1), args.size, agreement)


if __name__ == "__main__":
    main()
