"""How the hidden background looks (issue 13): texture fill against the smooth fill and the smooth fill plus matched
noise, on composites over textured photographs the fill was not tuned on (texture_metrics.HELD_OUT_PHOTOS, seed 1;
it was tuned on TUNING_PHOTOS, seed 0). Prints a row per image and the means, and checks the targets.

    .venv/bin/python benchmarks/bench_texture.py [--per-photo 4] [--size 384] [--set held-out|tuning]
        [--backgrounds DIR]   # any folder of texture images instead (e.g. Krita's /usr/share/krita/patterns)

Targets: hf_ratio 0.7..1.3, lowpass_MAD <= 1.1x the smooth fill's, patch_SW below the smooth fill's and below the
smooth fill plus matched noise. border_tone (a ring of another tone around the hole, texture_metrics.py) is printed
beside them.
"""

import argparse
import os
import statistics
import time
from pathlib import Path

from layeringdiff.imaging.compose import exact_layers
from layeringdiff.imaging.foreground import estimate_foreground
from layeringdiff.io.images import load_image
from layeringdiff.stages.classical import complete_background, texture_fill
from layeringdiff.texture_metrics import (
    HELD_OUT_PHOTOS,
    TUNING_PHOTOS,
    hidden_texture_metrics,
    matched_noise,
    textured_composite,
    textured_set,
)

FIGURES = ("hf_ratio", "lowpass_MAD", "patch_SW", "border_tone")


def folder_set(folder: str, per_image: int, size: int, seed: int) -> list[tuple]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif"))
    out = []
    for i, path in enumerate(files):
        image = load_image(path)[..., :3]
        if min(image.shape[:2]) < 128:
            continue
        out += [(path.stem, *textured_composite(image, size, seed * 1000 + 17 * j + i)) for j in range(per_image)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", choices=("held-out", "tuning"), default="held-out")
    parser.add_argument("--per-photo", type=int, default=4)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--backgrounds", help="folder of texture images to composite over instead")
    args = parser.parse_args()
    seed = 1 if args.set == "held-out" else 0
    if args.backgrounds:
        data = folder_set(args.backgrounds, args.per_photo, args.size, seed)
    else:
        data = textured_set(HELD_OUT_PHOTOS if args.set == "held-out" else TUNING_PHOTOS, args.per_photo, args.size,
                            seed)
    print(f"load {os.getloadavg()[0]:.2f}; {len(data)} composites of {args.size}x{args.size}; figures over the hidden "
          "region (true alpha >= 0.95): hf_ratio / lowpass_MAD / patch_SW / border_tone")
    rows: dict[str, list[dict]] = {"smooth": [], "smooth + matched noise": [], "texture": []}
    fill_times = []
    for name, comp, alpha, _, bg in data:
        fg_est, bg_est = estimate_foreground(comp, alpha)
        smooth = exact_layers(comp, alpha, fg_est, complete_background(comp, alpha, fg_est, bg_est))[1]
        start = time.perf_counter()
        texture = exact_layers(comp, alpha, fg_est, complete_background(comp, alpha, fg_est, bg_est,
                                                                        texture_fill(alpha)))[1]
        fill_times.append(time.perf_counter() - start)
        for key, out in (("smooth", smooth), ("smooth + matched noise", matched_noise(smooth, bg, alpha)),
                         ("texture", texture)):
            rows[key].append(hidden_texture_metrics(out, bg, alpha))
        print(f"{name:22s} " + " | ".join(
            f"{key.split()[0][:6]} " + " ".join(f"{r[-1][f]:6.2f}" for f in FIGURES) for key, r in rows.items()),
            flush=True)
    means = {key: {f: statistics.mean(r[f] for r in rs) for f in FIGURES} for key, rs in rows.items()}
    print("\n| fill | hf_ratio | lowpass_MAD | patch_SW | border_tone |\n|---|---|---|---|---|")
    for key, m in means.items():
        print(f"| {key} | " + " | ".join(f"{m[f]:.2f}" for f in FIGURES) + " |")
    t, s, n = means["texture"], means["smooth"], means["smooth + matched noise"]
    checks = {"hf_ratio in 0.7..1.3": 0.7 <= t["hf_ratio"] <= 1.3,
              "lowpass_MAD <= 1.1x smooth": t["lowpass_MAD"] <= 1.1 * s["lowpass_MAD"],
              "patch_SW < smooth": t["patch_SW"] < s["patch_SW"],
              "patch_SW < smooth + matched noise": t["patch_SW"] < n["patch_SW"]}
    print("targets: " + ", ".join(f"{k}: {'met' if ok else 'NOT met'}" for k, ok in checks.items())
          + f" (texture's lowpass_MAD is {t['lowpass_MAD'] / s['lowpass_MAD']:.2f}x smooth)")
    wins = sum(r_t["patch_SW"] < min(r_s["patch_SW"], r_n["patch_SW"]) for r_t, r_s, r_n in
               zip(rows["texture"], rows["smooth"], rows["smooth + matched noise"], strict=True))
    print(f"texture's patch_SW below both others on {wins}/{len(data)} images; texture fill "
          f"{statistics.median(fill_times):.2f} s median per image (layers, incl. the blend); load "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
