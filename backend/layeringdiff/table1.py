"""The paper's Table 1 (Sec. 4.1): layered images generated from prompt triplets, scored per layer.

For each triplet (foreground, background and composite prompts; the paper's test set has 572 of them, made with
ChatGPT) Generate layered makes the composite from the composite prompt and splits off the foreground phrase. Then:
- FID and KID of the foreground layers against a reference set of foregrounds (the paper: MAGICK), and of the
  background layers and the composites against a reference set of scenes (the paper: COCO); torchmetrics'
  implementations, with their Inception features (which need the torch-fidelity package and its weights) unless
  another feature extractor is given;
- CLIP score of each layer against its own prompt (torchmetrics' CLIPScore, the CLIP model given);
- FG-MIoU, the paper's: the foreground prompt's box (Grounding DINO) on each layer, SAM's mask in it, and the mean
  IoU of that mask with the foreground layer's alpha: high for the foreground layer (the object is there, in its
  shape), low for the background layer (no object left in it).
Layers with transparency are scored over a middle grey (FOREGROUND_MATTE), as a viewer shows them.
"""

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

FOREGROUND_MATTE = 0.5  # the grey a foreground layer is put over to be scored as an image
KINDS = ("foreground", "background", "composite")


@dataclass(frozen=True)
class Triplet:
    foreground: str
    background: str
    composite: str


@dataclass
class Layered:
    triplet: Triplet
    foreground: np.ndarray  # HxWx4 straight alpha
    background: np.ndarray  # HxWx3
    composite: np.ndarray  # HxWx3


def read_prompts(path: str | Path) -> list[Triplet]:
    """A prompt file: one triplet a line, as JSON {"foreground", "background", "composite"} or as
    `foreground | background | composite`; blank lines and lines starting with # are skipped."""
    triplets = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            if line.startswith("{"):
                row = json.loads(line)
                triplet = Triplet(str(row["foreground"]), str(row["background"]), str(row["composite"]))
            else:
                fg, bg, comp = (part.strip() for part in line.split("|"))
                triplet = Triplet(fg, bg, comp)
        except (ValueError, KeyError) as exc:
            raise InputError(f"{path}, line {n}: not a prompt triplet ({exc})",
                             'write `foreground | background | composite` or {"foreground": ..., "background": '
                             '..., "composite": ...}') from None
        if not all((triplet.foreground, triplet.background, triplet.composite)):
            raise InputError(f"{path}, line {n}: a prompt of the triplet is empty")
        triplets.append(triplet)
    if not triplets:
        raise InputError(f"{path} holds no prompt triplet")
    return triplets


def as_image(layer: np.ndarray) -> np.ndarray:
    """HxWx3 in [0, 1]: an RGBA layer over the middle grey, an RGB one as it is."""
    if layer.shape[2] == 4:
        a = layer[..., 3:4]
        return a * layer[..., :3] + (1 - a) * FOREGROUND_MATTE
    return layer[..., :3]


def _batch(images: Iterable[np.ndarray], size: int) -> Any:
    """Images resized to size x size as an (N, 3, size, size) float tensor in [0, 1]."""
    import cv2
    import torch

    arrays = [cv2.resize(np.ascontiguousarray(as_image(im), np.float32), (size, size), interpolation=cv2.INTER_AREA)
              for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).clamp(0, 1)


def fid_kid(real: list[np.ndarray], fake: list[np.ndarray], feature: Any = 2048, size: int = 299) -> dict[str, float]:
    """torchmetrics' FID and KID (mean) of `fake` against `real` (images in [0, 1]); `feature`: Inception's layer
    (torch-fidelity's weights) or an nn.Module giving (N, d) features."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    subset = max(2, min(len(real), len(fake), 1000))
    try:
        fid = FrechetInceptionDistance(feature=feature, normalize=True)
        kid = KernelInceptionDistance(feature=feature, subset_size=subset, normalize=True)
    except ModuleNotFoundError as exc:  # torchmetrics' Inception features come from torch-fidelity
        raise InputError(f"FID and KID need Inception's features: {exc}",
                         "pip install torch-fidelity (it installs torchvision: take the build that matches your "
                         "torch, or it replaces torch)") from None
    for metric in (fid, kid):
        metric.update(_batch(real, size), real=True)
        metric.update(_batch(fake, size), real=False)
    return {"FID": float(fid.compute()), "KID": float(kid.compute()[0])}


class ProjectedFeatures:
    """A CLIPModel whose get_image_features / get_text_features give the projected embeddings as a tensor, as
    torchmetrics' CLIPScore expects: transformers 5 returns them inside an output object (its pooler_output)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def to(self, device: Any) -> "ProjectedFeatures":
        self.model = self.model.to(device)
        return self

    def get_image_features(self, *args: Any, **kwargs: Any) -> Any:
        out = self.model.get_image_features(*args, **kwargs)
        return getattr(out, "pooler_output", out)

    def get_text_features(self, *args: Any, **kwargs: Any) -> Any:
        out = self.model.get_text_features(*args, **kwargs)
        return getattr(out, "pooler_output", out)


def clip_score(images: list[np.ndarray], prompts: list[str], clip: Callable[[], tuple[Any, Any]]) -> float:
    """torchmetrics' CLIPScore (100 x cosine, floored at 0, averaged) of each image with its prompt; `clip()` gives
    (CLIPModel, CLIPProcessor)."""
    import torch
    from torchmetrics.multimodal.clip_score import CLIPScore

    def loaded() -> tuple[Any, Any]:
        model, processor = clip()
        return ProjectedFeatures(model), processor

    metric = CLIPScore(model_name_or_path=loaded)
    batch = (torch.from_numpy(np.stack([as_image(im) for im in images])) * 255).round().to(torch.uint8)
    metric.update(list(batch.permute(0, 3, 1, 2)), prompts)
    return float(metric.compute())


def fg_miou(models: Any, layer: np.ndarray, phrase: str, alpha: np.ndarray, box_threshold: float | None = None,
            text_threshold: float | None = None) -> float:
    """The paper's FG-MIoU for one layer: the phrase's best box on it (Grounding DINO, at stage 2's thresholds unless
    given), SAM's mask there, and its IoU with the foreground's alpha > 0.5; 0 when nothing is found."""
    from .stages.foreground import BOX_THRESHOLD, TEXT_THRESHOLD, choose_box, detect, segment, to_pil

    box_threshold = BOX_THRESHOLD if box_threshold is None else box_threshold
    text_threshold = TEXT_THRESHOLD if text_threshold is None else text_threshold

    pil = to_pil(as_image(layer))
    dino, dino_processor = models.grounding_dino()
    found = detect(dino, dino_processor, pil, phrase, box_threshold, text_threshold)
    if not found:
        return 0.0
    box = choose_box(found, "best", pil.width, pil.height)
    sam, sam_processor = models.sam()
    mask = segment(sam, sam_processor, pil, box)
    truth = alpha > 0.5
    union = int((mask | truth).sum())
    return float((mask & truth).sum() / union) if union else 0.0


def table1(layered: list[Layered], references: dict[str, list[np.ndarray]], models: Any,
           clip: Callable[[], tuple[Any, Any]], feature: Any = 2048, size: int = 299) -> dict[str, Any]:
    """Table 1's rows for these generated layers: per kind FID, KID and CLIP score; FG-MIoU of the foreground and
    background layers. `references`: "foreground" and "scene" image lists."""
    prompts = {kind: [getattr(item.triplet, kind) for item in layered] for kind in KINDS}
    images = {"foreground": [item.foreground for item in layered], "background": [item.background for item in layered],
              "composite": [item.composite for item in layered]}
    reference = {"foreground": references["foreground"], "background": references["scene"],
                 "composite": references["scene"]}
    rows: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        rows[kind] = {**fid_kid(reference[kind], images[kind], feature, size),
                      "CLIP score": clip_score(images[kind], prompts[kind], clip)}
    for kind in ("foreground", "background"):
        rows[kind]["FG-MIoU"] = float(np.mean([
            fg_miou(models, getattr(item, kind), item.triplet.foreground, item.foreground[..., 3])
            for item in layered]))
    return {"count": len(layered), "rows": rows,
            "notes": ["FG-MIoU: higher is better for the foreground layer, lower for the background layer",
                      f"layers with transparency scored over a grey of {FOREGROUND_MATTE}"]}


def write_table1(result: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    js = out / "table1.json"
    js.write_text(json.dumps(result, indent=1))
    names = ["FID", "KID", "CLIP score", "FG-MIoU"]
    lines = [f"Table 1 on {result['count']} prompt triplets", "", "| layer | " + " | ".join(names) + " |",
             "|---" * (len(names) + 1) + "|"]
    for kind, row in result["rows"].items():
        lines.append(f"| {kind} | " + " | ".join(f"{row[n]:.4g}" if n in row else "-" for n in names) + " |")
    lines += ["", *result["notes"]]
    md = out / "table1.md"
    md.write_text("\n".join(lines) + "\n")
    return js, md
