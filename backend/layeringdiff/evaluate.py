"""The paper's evaluation of the layering stage (Sec. 4.2, Table 4) and the layer statistics of Table 2.

Test set: synthetic composites of held-out foregrounds and backgrounds (never used for training; the paper: 1,000
from MAGICK and BG-20k test sets), trimaps as in Xu et al. Every method gets the same alpha: ViTMatte's from the
trimap, as the paper's baselines, or the true alpha when ViTMatte's weights are not on the machine (labelled).

Metrics as Table 4's caption and figures give them (in every row SAD / MAD = 786,432 = 512 x 512 x 3): MAD and MSE
are per-value means over the whole RGB layer, x 10^3; SAD is the whole sum, x 10^-3; LPIPS x 10^2 (only where the
`lpips` package and its weights are on the machine, else n/a). F where alpha = 0 is defined as the foreground's
colours extended outward (imaging/compose.extend_foreground), for the truth and for every method's output alike, so
colours a layer never shows do not count. Extra columns, labelled: F over the trimap's unknown band weighted by
alpha, B where the object covers it. Writes results.json and results.md.
"""

import json
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from .imaging.compose import compose_layers, extend_foreground
from .imaging.foreground import estimate_foreground
from .imaging.inpaint import inpaint
from .options import DEFAULT_FILL, LEAST_CHANGE, PROJECTION
from .progress import no_progress
from .stages.classical import HIDDEN_ALPHA, classical_method
from .texture_metrics import hidden_texture_metrics

SCALES = {"MAD": 1e3, "MSE": 1e3, "SAD": 1e-3, "LPIPS": 1e2}  # Table 4's caption
METRICS = ("MAD", "MSE", "SAD", "LPIPS")
TRIMAP_KERNELS = (5, 10, 15, 20, 25)  # Xu et al.: the unknown band dilated by a random kernel size
LPIPS_BACKBONE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet weights, which lpips.LPIPS(net="alex") loads
NOT_INCLUDED = ("FBA matting (Table 4's second baseline) is left out: no maintained package loads it with weights "
                "that can be had here.")

Method = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def trimap_like_xu(alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unknown = pixels with 0 < alpha < 1, dilated by a random kernel; 1 / 0 elsewhere."""
    k = int(rng.choice(TRIMAP_KERNELS))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    fg = (alpha >= 1.0).astype(np.uint8)
    unknown = cv2.dilate(((alpha > 0) & (alpha < 1)).astype(np.uint8), kernel) > 0
    trimap = np.where(fg > 0, 1.0, 0.0).astype(np.float32)
    trimap[unknown] = 0.5
    return trimap


def errors(pred: np.ndarray, gt: np.ndarray, region: np.ndarray | None = None, weight: np.ndarray | None = None,
           scales: dict[str, float] = SCALES) -> dict[str, float]:
    """MAD, MSE (means over every value of the region's pixels, all channels) and SAD (their sum), times `scales`.
    Without a region: the whole layer, as Table 4."""
    d = np.abs(pred.astype(np.float32) - gt.astype(np.float32))
    if weight is not None:
        d = d * weight[..., None]
    if region is not None:
        d = d[region]
    if d.size == 0:
        return {"MAD": 0.0, "MSE": 0.0, "SAD": 0.0}
    return {"MAD": float(d.mean()) * scales["MAD"], "MSE": float((d ** 2).mean()) * scales["MSE"],
            "SAD": float(d.sum(dtype=np.float64)) * scales["SAD"]}


def parse_scales(text: str) -> dict[str, float]:
    """'MAD=1e3,MSE=1e3,SAD=1e-3,LPIPS=1e2' (any subset; the rest keep SCALES) -> factors."""
    scales = dict(SCALES)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip().upper()
        try:
            factor = float(value)
        except ValueError:
            factor = float("nan")
        if name not in SCALES or not np.isfinite(factor) or factor <= 0:
            raise ValueError(f"bad scale {part!r}: use NAME=FACTOR with NAME one of {', '.join(SCALES)} "
                             "and a positive number, e.g. MAD=1e3,MSE=1e3,SAD=1e-3,LPIPS=1e2")
        scales[name] = factor
    return scales


def describe_scales(scales: dict[str, float]) -> str:
    return ", ".join(f"{k} x {v:g}" if v >= 1 else f"{k} / {1 / v:g}" for k, v in scales.items())


# ---- the methods: (composite, alpha) -> (F, B) -------------------------------------------------------------
def germer(comp: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Table 4's first baseline: multi-level foreground estimation (Germer et al.), its F and B."""
    return estimate_foreground(comp, alpha)


def germer_inpaint(comp: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Its "+ Inp." row without a generative inpainter: the background filled by the offline push-pull fill where
    alpha > 0.95 (a labelled fallback: the paper's row uses a generative inpainter)."""
    fg, bg = estimate_foreground(comp, alpha)
    return fg, inpaint(bg, alpha > HIDDEN_ALPHA)


def germer_inpaint_with(fill: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Method:
    """Its "+ Inp." row with a generative inpainter: `fill(image, hole)` (LaMa's, or SD2 inpainting's zero-shot)
    where alpha > 0.95."""

    def method(comp: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fg, bg = estimate_foreground(comp, alpha)
        return fg, fill(bg, alpha > HIDDEN_ALPHA)

    return method


def classical_with(composition: str, fill: str = DEFAULT_FILL) -> Method:
    """This project's offline layer method (stages/classical.py) with that fill, through that composition step."""
    layers = classical_method(fill).layers

    def method(comp: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, b, _ = compose_layers(comp, alpha, *layers(comp, alpha, no_progress), composition)
        return f, b

    return method


classical = classical_with(PROJECTION)  # this project's offline split, as the product runs it (texture fill)
classical_smooth = classical_with(PROJECTION, "smooth")  # ... with the smooth fill of the hidden background
classical_least_change = classical_with(LEAST_CHANGE)  # the same guesses through the least-change step


PAPER_COMPOSITION = "LayeringDiff FBDD + HFA, copy-through (the paper's composition)"
OURS_COMPOSITION = "LayeringDiff FBDD + HFA + least-change composition (ours)"


def fbdd_hfa_methods(fbdd: Any, hfa: Any, steps: int, seed: int) -> dict[str, Method]:
    """The layering stage twice, as Table 4's "Ours" with the paper's composition (FBDD + HFA, copy-through: the
    layers as they come) and with this project's least-change step after it. Both run it as a split does: FBDD and
    HFA on the object's crop (the inputs HFA is trained on: layering.hfa_inputs), the composite outside it. Both
    rows share one FBDD + HFA run per sample (the evaluation calls the methods in turn on the same arrays)."""
    from .stages.layering import fbdd_method, on_object_crop

    stage = fbdd_method(fbdd, hfa, steps, seed).layers
    last: dict[str, Any] = {}

    def layers(comp: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if last.get("comp") is not comp or last.get("alpha") is not alpha:
            found = on_object_crop(comp, alpha, lambda rgb, a: stage(rgb, a, no_progress))
            last.update(comp=comp, alpha=alpha, layers=found)
        return last["layers"]

    def ours(comp: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f, b, _ = compose_layers(comp, alpha, *layers(comp, alpha), LEAST_CHANGE)
        return f, b

    return {PAPER_COMPOSITION: layers, OURS_COMPOSITION: ours}


def vitmatte_alpha(model: Any, processor: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """ViTMatte's alpha from the composite and the trimap, as the paper's baselines get it."""
    from .stages.learned_matte import learned_matte

    return lambda comp, trimap: learned_matte(model, processor, comp, trimap)


def layer_statistics(alpha: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Table 2, on the paper's 0 to 100 scale: occupancy ratio, longest span (of the bounding box, relative to the
    image side), vertical and horizontal centre (alpha-weighted, 0 = top/left, 100 = bottom/right)."""
    h, w = alpha.shape
    mask = alpha > threshold
    if not mask.any():
        return {"occupancy": 0.0, "longest_span": 0.0, "center_y": 50.0, "center_x": 50.0}
    ys, xs = np.nonzero(mask)
    span = max((ys.max() - ys.min() + 1) / h, (xs.max() - xs.min() + 1) / w)
    total = float(alpha.sum())
    yy, xx = np.mgrid[:h, :w]
    return {"occupancy": 100 * float(mask.mean()), "longest_span": 100 * float(span),
            "center_y": 100 * float((alpha * (yy + 0.5)).sum() / total / h),
            "center_x": 100 * float((alpha * (xx + 0.5)).sum() / total / w)}


def lpips_metric() -> Callable[[np.ndarray, np.ndarray], float] | None:
    """LPIPS (AlexNet) when the `lpips` package and its weights are on this machine, else None. Nothing is
    downloaded: without torchvision's AlexNet weights in the torch hub cache LPIPS is not built at all."""
    try:
        import lpips
        import torch
    except ImportError:
        return None
    if not (Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE).is_file():
        return None
    try:
        net = lpips.LPIPS(net="alex", verbose=False).eval()
    except Exception:  # weights unreadable: no number rather than a wrong one
        return None

    def metric(a: np.ndarray, b: np.ndarray) -> float:
        ta = torch.from_numpy(np.ascontiguousarray(a, np.float32)).permute(2, 0, 1)[None] * 2 - 1
        tb = torch.from_numpy(np.ascontiguousarray(b, np.float32)).permute(2, 0, 1)[None] * 2 - 1
        with torch.no_grad():
            return float(net(ta, tb))

    return metric


def evaluate(dataset: Any, methods: dict[str, Method], seed: int = 0, scales: dict[str, float] = SCALES,
             alpha_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None, alpha_source: str = "true alpha",
             lpips: Callable[[np.ndarray, np.ndarray], float] | None | str = "auto",
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Mean metrics per method over the dataset (Table 4), plus the band/covered extras and Table 2's statistics.
    `alpha_fn(composite, trimap)` gives the alpha every method gets (default: the true one)."""
    rng = np.random.default_rng(seed)
    lp = lpips_metric() if lpips == "auto" else lpips
    sums: dict[str, dict[str, float]] = {m: {} for m in methods}
    counts: dict[str, dict[str, int]] = {m: {} for m in methods}  # a figure a sample cannot give is left out
    # a ratio's mean is ruled by the samples whose true hidden background is nearly flat (sky, a wall): the
    # median is reported beside it
    hf_ratios: dict[str, list[float]] = {m: [] for m in methods}
    stats = []
    for i in range(len(dataset)):
        s = dataset[i]
        comp, alpha_gt, fg_gt, bg_gt = s["composite"], s["alpha"], s["foreground"], s["background"]
        trimap = trimap_like_xu(alpha_gt, rng)
        alpha = alpha_gt if alpha_fn is None else alpha_fn(comp, trimap).astype(np.float32)
        visible = alpha_gt > 0
        stats.append(layer_statistics(alpha_gt))
        for name, method in methods.items():
            fg, bg = method(comp, alpha)
            fg = extend_foreground(fg, visible)  # F where alpha = 0 by the dataset's definition
            row = {f"fg_{k}": v for k, v in errors(fg, fg_gt, scales=scales).items()}
            row.update({f"bg_{k}": v for k, v in errors(bg, bg_gt, scales=scales).items()})
            row.update({f"hidden_{k}": v for k, v in hidden_texture_metrics(bg, bg_gt, alpha_gt).items()})
            if lp is not None:
                row["fg_LPIPS"] = lp(fg, fg_gt) * scales["LPIPS"]
                row["bg_LPIPS"] = lp(bg, bg_gt) * scales["LPIPS"]
            row.update({f"fg_band_{k}": v for k, v in errors(fg, fg_gt, trimap == 0.5, alpha_gt, scales).items()})
            row.update({f"bg_covered_{k}": v for k, v in errors(bg, bg_gt, visible, scales=scales).items()})
            if np.isfinite(row.get("hidden_hf_ratio", np.nan)):
                hf_ratios[name].append(row["hidden_hf_ratio"])
            for k, v in row.items():
                if np.isfinite(v):
                    sums[name][k] = sums[name].get(k, 0.0) + v
                    counts[name][k] = counts[name].get(k, 0) + 1
        if progress:
            progress(i + 1, len(dataset))
    table = {m: {k: v / counts[m][k] for k, v in vals.items()} for m, vals in sums.items()}
    for m, ratios in hf_ratios.items():
        if ratios:
            table[m]["hidden_hf_ratio_median"] = float(np.median(ratios))
    mean_stats = {k: float(np.mean([s[k] for s in stats])) for k in stats[0]} if stats else {}
    shape = list(dataset[0]["alpha"].shape) if len(dataset) else []
    return {"count": len(dataset), "size": shape, "scales": scales, "alpha": alpha_source, "lpips": lp is not None,
            "methods": table, "layer_statistics": mean_stats, "not_included": [NOT_INCLUDED]}


def _cell(vals: dict[str, float], key: str) -> str:
    return f"{vals[key]:.3f}" if key in vals else "n/a"


def write_report(result: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1))
    size = "x".join(str(v) for v in result.get("size", [])) or "?"
    lines = [f"Layer decomposition on {result['count']} synthetic composites of held-out sources ({size} px), "
             f"every method given the {result['alpha']} (Table 4 protocol; {describe_scales(result['scales'])}; "
             "lower is better)", "",
             "Table 4's metrics: MAD and MSE are per-value means over the whole RGB layer, SAD its sum; F where "
             "alpha = 0 is the foreground's colours extended outward.", "",
             "| method | " + " | ".join(f"F {m}" for m in METRICS) + " | " + " | ".join(f"B {m}" for m in METRICS)
             + " |", "|---|" + "---|" * 2 * len(METRICS)]
    for name, vals in result["methods"].items():
        cells = [_cell(vals, f"{layer}_{m}") for layer in ("fg", "bg") for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    extra = ("MAD", "MSE", "SAD")
    lines += ["", "Extra (where the layers differ): F over the trimap's unknown band weighted by alpha, B where the "
              "object covers it (alpha > 0); MAD/MSE means over those values, SAD their sum.", "",
              "| method | " + " | ".join(f"F band {m}" for m in extra) + " | "
              + " | ".join(f"B covered {m}" for m in extra) + " |", "|---|" + "---|" * 2 * len(extra)]
    for name, vals in result["methods"].items():
        cells = [_cell(vals, f"fg_band_{m}") for m in extra] + [_cell(vals, f"bg_covered_{m}") for m in extra]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    hidden = ("hf_ratio", "hf_ratio_median", "lowpass_MAD", "patch_SW", "border_tone")
    lines += ["", "The hidden background (true alpha >= 0.95; texture_metrics.py): high-frequency energy over the "
              "truth's (mean and median over the samples; 1 is right, a blur is near 0), low-passed MAD x 255, "
              "patch distribution distance x 255, tone step at the border x 255.", "",
              "| method | " + " | ".join(hidden) + " |", "|---|" + "---|" * len(hidden)]
    for name, vals in result["methods"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(vals, f"hidden_{m}") for m in hidden) + " |")
    if not result["lpips"]:
        lines += ["", "LPIPS: n/a (the `lpips` package or its AlexNet weights are not on this machine)."]
    lines += [""] + list(result.get("not_included", []))
    if result["layer_statistics"]:
        lines += ["", "Layer statistics of the test set (Table 2, 0 to 100): " + ", ".join(
            f"{k} {v:.2f}" for k, v in result["layer_statistics"].items())]
    if result.get("generated_layer_statistics"):
        lines += ["", f"Layer statistics of {result['generated_count']} generated layers (Table 2, 0 to 100): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in result["generated_layer_statistics"].items())]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    return out / "results.json", out / "results.md"
