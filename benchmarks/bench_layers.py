"""Several objects in one operation (`split --labels`, stages/peel.py) on synthetic scenes whose layers are known:
3 to 5 overlapping objects with soft and furry edges (imaging's soft_alpha: hair-like strands and a see-through
patch), cut from photos or from "paintings" (the photos posterised and smoothed), over a textured (photo) or a
smooth (gradient) background. The labels are the hard map a user would paint: each pixel to the object that shows
most there, where that is more than half.

Per object it prints the alpha IoU (threshold 0.5) and the soft-band alpha error (mean |alpha - truth| over
0 < truth < 1 but for the see-through patch, in /255), both on the part no front object covers, the patch's own
error apart (a label says nothing inside an object: no band rule reaches it), and the RGB L1 of its colours where it
shows; per scene the automatic order's share of touching pairs right (`--order auto`), the recomposition error, the
time and the peak RSS above the start; beside each soft-band error, the contrast of the object's edge against what
is behind it (where it is low the picture does not show the strands). A sequence of single splits is the same
computation (split_objects peels one object at a time), so the figures hold for both. The issue's targets: IoU at
least 0.9 and soft-band error at most 12/255 on every object, order 90%, a 3-object 1024^2 scene in 3 s, peak memory
at most one split's plus 50%.

    .venv/bin/python benchmarks/bench_layers.py [--scenes 6] [--size 512] [--bands 8]
        [--matting vitmatte [--models-dir DIR]]

`--matting vitmatte` mats each object with the learned ViTMatte instead of the closed form (its weights: `layeringdiff
models fetch vitmatte`; none on the machines this was written on, so its figures wait for a user's).
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from layeringdiff.examples import photo, soft_alpha  # noqa: E402
from layeringdiff.imaging.trimap import band_radius  # noqa: E402
from layeringdiff.options import MatteFn, SplitOptions  # noqa: E402
from layeringdiff.peers import release_memory  # noqa: E402
from layeringdiff.progress import no_progress  # noqa: E402
from layeringdiff.stages.order import occlusion_order, shared_boundaries  # noqa: E402
from layeringdiff.stages.peel import LabelMasks, label_values, split_objects  # noqa: E402
from layeringdiff.stages.split import split_alpha, split_layer  # noqa: E402

from benchmarks.bench_job_memory import own_status, reset_peak  # noqa: E402

# An object whose soft edge differs from what is behind it by less than this (mean |F - B|, /255) does not show in
# the picture (cut from the photo behind it): its edge is the label's word alone. Reported apart, not left out.
UNSEEN_CONTRAST = 2
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "hubble_deep_field")


def painting(image: np.ndarray) -> np.ndarray:
    """A photo made to look painted: smoothed, then posterised to a few levels a channel."""
    smooth = cv2.bilateralFilter(image, 9, 0.2, 7)
    return np.round(smooth * 6) / 6


def scene(rng: np.random.Generator, size: int, objects: int) -> dict:
    """The image, the labels, and each object's true alpha and colours (front first)."""
    if rng.random() < 0.5:
        background = cv2.resize(photo(str(rng.choice(PHOTOS))), (size, size), interpolation=cv2.INTER_AREA)
    else:  # smooth: a two-colour gradient
        a, b = rng.random(3), rng.random(3)
        t = np.linspace(0, 1, size, dtype=np.float32)[None, :, None]
        background = np.repeat((1 - t) * a + t * b, size, axis=0)
    background = background.astype(np.float32)
    alphas, colours, patches = [], [], []
    for _ in range(objects):
        side = int(rng.integers(size // 3, size // 2))
        seed, hair, glass = int(rng.integers(1 << 30)), int(rng.integers(10, 40)), bool(rng.random() < 0.3)
        matte = soft_alpha(side, side, seed=seed, hair=hair, glass=glass)
        alpha, patch = np.zeros((size, size), np.float32), np.zeros((size, size), bool)
        y, x = (int(v) for v in rng.integers(0, size - side, 2))
        alpha[y:y + side, x:x + side] = matte
        if glass:  # the see-through patch: where the matte differs from the same one without it
            patch[y:y + side, x:x + side] = matte != soft_alpha(side, side, seed=seed, hair=hair, glass=False)
        patches.append(patch)
        source = cv2.resize(photo(str(rng.choice(PHOTOS))), (size, size), interpolation=cv2.INTER_AREA)
        colours.append(painting(source) if rng.random() < 0.5 else source)
        alphas.append(alpha)
    image = background.copy()
    for alpha, colour in zip(reversed(alphas), reversed(colours), strict=True):  # back to front
        image = alpha[..., None] * colour + (1 - alpha[..., None]) * image
    covered = np.zeros((size, size), np.float32)
    shows = []
    for alpha in alphas:  # front first: how much of each shows
        shows.append(alpha * (1 - covered))
        covered = covered + alpha * (1 - covered)
    stacked = np.stack(shows)
    labels = np.where(stacked.max(0) > 0.5, stacked.argmax(0) + 1, 0).astype(np.uint8)
    uncovered = [np.ones((size, size), bool)]
    for alpha in alphas[:-1]:
        uncovered.append(uncovered[-1] & (alpha < 0.01))
    return {"image": np.clip(image, 0, 1).astype(np.float32), "labels": labels, "alphas": alphas,
            "colours": colours, "uncovered": uncovered, "background": background, "patches": patches}


def edges(s: dict, k: int) -> np.ndarray:
    """Object k's soft edge pixels (0 < alpha < 1, its strands included) where no front object covers it, its
    see-through patch left out: the soft band that a band rule around the label's edge is about."""
    truth = s["alphas"][k - 1]
    return (truth > 0.0) & (truth < 1.0) & s["uncovered"][k - 1] & ~s["patches"][k - 1]


def contrast(s: dict, k: int) -> float:
    """How much object k's soft edge pixels differ from what is behind them there: mean |F - B| over RGB (/255) on
    edges(). Where its colours match the background's (dark strands over a dark picture), the picture does not show
    the strands, and no matting can find them."""
    behind = s["background"]
    for alpha, colour in zip(reversed(s["alphas"][k:]), reversed(s["colours"][k:]), strict=True):
        behind = alpha[..., None] * colour + (1 - alpha[..., None]) * behind
    band = edges(s, k)
    return float(np.abs(s["colours"][k - 1] - behind)[band].mean() * 255) if band.any() else 0.0


class PeakRss:
    """The RSS high-water mark above the start of a block (Linux: VmHWM reset first; freed heap memory handed back
    to the system before, so the block's allocations show)."""

    def __enter__(self) -> "PeakRss":
        release_memory()
        reset_peak()
        self.start_rss = own_status("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.above = own_status("VmHWM") - self.start_rss


def measure(s: dict, matte: MatteFn | None = None) -> dict:
    labels, image = s["labels"], s["image"]
    values = label_values(labels)
    masks = LabelMasks(labels, values)
    options = SplitOptions(quantize=255, matting="vitmatte" if matte else "closed-form")
    singles = []
    for mask in masks:  # each object split alone: the peak of a sequence of single splits is the largest of these
        with PeakRss() as one:
            split_layer(image, mask=mask, options=options, matte=matte)
        singles.append(one.above)
        del mask
    start = time.perf_counter()
    with PeakRss() as many:
        peeled = split_objects(image, masks, options, matte=matte)
    elapsed = time.perf_counter() - start
    rows = []
    for k, stored in zip(values, peeled.layers, strict=True):
        layer = stored / np.float32(255) if stored.dtype == np.uint8 else stored
        truth, fine = s["alphas"][k - 1], s["uncovered"][k - 1]
        alpha = layer[..., 3]
        ours, real = (alpha > 0.5) & fine, (truth > 0.5) & fine
        band, patch = edges(s, k), s["patches"][k - 1] & fine
        shown = (truth > 0.5) & fine
        rows.append({"iou": float((ours & real).sum() / max(1, (ours | real).sum())),
                     "band": float(np.abs(alpha - truth)[band].mean() * 255) if band.any() else 0.0,
                     "patch": float(np.abs(alpha - truth)[patch].mean() * 255) if patch.any() else None,
                     "rgb": float(np.abs(layer[..., :3] - s["colours"][k - 1])[shown].mean() * 255),
                     "contrast": contrast(s, k)})
    rank = {k: i for i, k in enumerate(occlusion_order(labels, values))}
    pairs = list(shared_boundaries(labels, values))
    right = sum((rank[a] < rank[b]) == (a < b) for a, b in pairs)
    return {"objects": rows, "order": (right, len(pairs)), "time": elapsed,
            "error": float(np.abs(peeled.composite()[..., :3] - image).max() * 255),
            "memory": (many.above, max(singles))}


def band_widths(count: int, size: int) -> None:
    """`--bands`: the band's trade-off on single objects cut by a hard mask (alpha > 0.5), half of them with strands
    and half hard-edged, photo in front of photo: the soft-band error and the whole alpha's error (summed over the
    canvas, per object pixel) with the split's automatic band (wider around strands, its prior firmer there), the
    2% band everywhere, and fixed ones."""
    for seed in range(count):
        rng = np.random.default_rng(seed)
        side = int(rng.integers(size // 3, size // 2))
        hair = int(rng.integers(10, 40)) if seed % 2 else 0
        alpha = np.zeros((size, size), np.float32)
        y, x = (int(v) for v in rng.integers(0, size - side, 2))
        alpha[y:y + side, x:x + side] = soft_alpha(side, side, seed=seed, hair=hair, glass=False)
        back, front = (cv2.resize(photo(PHOTOS[(seed + i) % len(PHOTOS)]), (size, size), interpolation=cv2.INTER_AREA)
                       for i in (0, 2))
        image = (alpha[..., None] * front + (1 - alpha[..., None]) * back).astype(np.float32)
        mask = (alpha > 0.5).astype(np.float32)
        soft = (alpha > 0) & (alpha < 1)
        cells = []
        for band in (None, band_radius(mask), 4, 8, 16):  # the split's automatic band, then fixed ones
            found = split_alpha(image, mask, None, SplitOptions(band=band), no_progress, {})
            name = f"{band} px" if band else "automatic"
            cells.append(f"{name}: soft {np.abs(found - alpha)[soft].mean() * 255:.0f}, whole "
                         f"{np.abs(found - alpha).sum() / mask.sum() * 255:.2f}")
        print(f"{'strands' if hair else 'hard edge'} (seed {seed}; then the 2% band): " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bands", type=int, default=0, metavar="N",
                        help="instead: N single objects with the automatic band against fixed ones")
    parser.add_argument("--matting", choices=("closed-form", "vitmatte"), default="closed-form")
    parser.add_argument("--models-dir", help="with --matting vitmatte: the folder holding vitmatte/")
    args = parser.parse_args()
    matte = None
    if args.matting == "vitmatte":
        from layeringdiff.errors import NotAvailable
        from layeringdiff.models import ModelConfig, ModelManager
        from layeringdiff.pipeline import matte_method

        try:
            matte = matte_method(ModelManager(ModelConfig.load(None).with_models_dir(args.models_dir)),
                                 {"matting": "vitmatte"})
        except NotAvailable as exc:
            sys.exit(f"{exc.text}; {exc.detail}")
    if args.bands:
        band_widths(args.bands, args.size)
        return
    rng = np.random.default_rng(args.seed)
    split_layer(np.random.default_rng(0).random((64, 64, 3)).astype(np.float32),
                mask=np.pad(np.ones((32, 32), np.float32), 16))  # kernels loaded before anything is timed
    objects = []
    right = pairs = 0
    for i in range(args.scenes):
        r = measure(scene(rng, args.size, int(rng.integers(3, 6))), matte)
        right, pairs = right + r["order"][0], pairs + r["order"][1]
        many, one = r["memory"]
        print(f"scene {i}: {len(r['objects'])} objects at {args.size}^2 in {r['time']:.2f} s; recomposition error "
              f"{r['error']:.2f}/255; order {r['order'][0]}/{r['order'][1]} touching pairs; peak RSS +{many >> 20} MB "
              f"(the largest single split +{one >> 20} MB: {many / one:.2f}x)")
        for k, o in enumerate(r["objects"], start=1):
            patch = "" if o["patch"] is None else f"; its see-through patch {o['patch']:.1f}/255"
            print(f"  object {k}: alpha IoU {o['iou']:.3f}, soft-band error {o['band']:.1f}/255 (its edge's contrast "
                  f"{o['contrast']:.0f}/255), RGB L1 {o['rgb']:.1f}/255{patch}")
            objects.append(o)
    print(f"worst: alpha IoU {min(o['iou'] for o in objects):.3f} (target 0.9), soft-band error "
          f"{max(o['band'] for o in objects):.1f}/255 (target 12); "
          f"automatic order {right}/{pairs} touching pairs ({right / max(1, pairs):.0%}, target 90%)")
    unseen = [o for o in objects if o["contrast"] < UNSEEN_CONTRAST]
    seen = [o for o in objects if o["contrast"] >= UNSEEN_CONTRAST]
    if unseen and seen:
        print(f"  of them {len(unseen)} whose edge does not show (contrast under {UNSEEN_CONTRAST}/255: the colours of "
              f"what is behind it, where no picture can place the edge): alpha IoU "
              f"{min(o['iou'] for o in unseen):.3f}-{max(o['iou'] for o in unseen):.3f}, soft-band error "
              f"{min(o['band'] for o in unseen):.1f}-{max(o['band'] for o in unseen):.1f}/255; the other "
              f"{len(seen)}: worst alpha IoU {min(o['iou'] for o in seen):.3f}, soft-band error "
              f"{max(o['band'] for o in seen):.1f}/255")
    bands = [o["band"] for o in objects]
    print(f"soft-band error: median {float(np.median(bands)):.1f}/255; {sum(b <= 12 for b in bands)} of {len(bands)} "
          "objects within 12/255")


if __name__ == "__main__":
    main()
