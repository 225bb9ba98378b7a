"""The automatic order of `split --labels --order auto` (stages/order.py) on random label maps whose order is known:
3 to 5 shapes (ellipses, star-like blobs, and with --rectangles rectangles too) drawn back to front. Prints the
share of touching pairs whose two objects end in the right order, and of the pairs' own verdicts (right, wrong,
undecided). The issue's target: 90% of touching pairs.

    .venv/bin/python benchmarks/bench_order.py [--scenes 60] [--rectangles] [--seed 0]
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from layeringdiff.stages import order  # noqa: E402

SIZE = 256


def random_labels(rng: np.random.Generator, rectangles: bool) -> np.ndarray:
    """Label 1 the frontmost: the shapes are drawn from the last label to the first."""
    labels = np.zeros((SIZE, SIZE), np.uint8)
    for k in range(int(rng.integers(3, 6)), 0, -1):
        shape = np.zeros((SIZE, SIZE), np.uint8)
        kind = int(rng.integers(0, 3)) if rectangles else int(rng.choice([0, 2]))
        cx, cy = (int(v) for v in rng.integers(50, SIZE - 50, 2))
        if kind == 0:
            axes = (int(rng.integers(20, 70)), int(rng.integers(20, 70)))
            cv2.ellipse(shape, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        elif kind == 1:
            w, h = (int(v) for v in rng.integers(30, 110, 2))
            cv2.rectangle(shape, (cx - w // 2, cy - h // 2), (cx + w // 2, cy + h // 2), 1, -1)
        else:  # a star-like blob: not convex
            t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
            r = rng.uniform(25, 60) * (1 + 0.3 * np.sin(5 * t + rng.uniform(0, 6)))
            cv2.fillPoly(shape, [np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1).astype(np.int32)], 1)
        labels[shape > 0] = k
    return labels


def evaluate(scenes: int, rectangles: bool, seed: int = 0) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    out = {"pairs": 0, "ordered": 0, "right": 0, "wrong": 0, "undecided": 0}
    for _ in range(scenes):
        labels = random_labels(rng, rectangles)
        values = [int(v) for v in np.unique(labels) if v]
        verdicts = order.occlusion_verdicts(labels, values)
        rank = {k: i for i, k in enumerate(order.best_order(labels, values, verdicts))}
        for a, b in order.shared_boundaries(labels, values):
            truth = 1 if a < b else -1
            verdict = verdicts.get((a, b), 0)
            out["pairs"] += 1
            out["ordered"] += (rank[a] < rank[b]) == (truth > 0)
            out["undecided" if verdict == 0 else "right" if np.sign(verdict) == truth else "wrong"] += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=60)
    parser.add_argument("--rectangles", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    r = evaluate(args.scenes, args.rectangles, args.seed)
    n = r["pairs"]
    print(f"{args.scenes} scenes{' with rectangles' if args.rectangles else ''}: {n} touching pairs; in the right "
          f"order {r['ordered'] / n:.0%} (target 90%); the pairs' verdicts right {r['right'] / n:.0%}, wrong "
          f"{r['wrong'] / n:.0%}, undecided {r['undecided'] / n:.0%}")


if __name__ == "__main__":
    main()
