"""Stage 2: which pixels are the foreground, from a phrase.

Grounding DINO box for the phrase -> SAM mask inside the box -> trimap by erode/dilate (unknown = 0.5)
-> boxes of a second Grounding DINO query for transparent things: their overlap with the object becomes
unknown -> ViTMatte alpha inside the unknown band.
"""

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..errors import InputError
from ..imaging.trimap import UNKNOWN, trimap_from_mask
from ..progress import ProgressFn, no_progress
from .learned_matte import learned_matte, to_pil

# The paper gives no numbers for stage 2 and defers it to MatteAnything (hustvl/Matte-Anything, matte_anything.py,
# the version with a foreground text input): its foreground box and text thresholds, its transparency query (as its
# UI passes it: full stops, which Grounding DINO reads as separate phrases) and box threshold, and its trimap (a
# 10x10 kernel, 5 iterations of erosion and of dilation)
BOX_THRESHOLD = 0.25
TEXT_THRESHOLD = 0.25
TRANSPARENT_QUERY = "glass.lens.crystal.diamond.bubble.bulb.web.grid"
TRANSPARENT_THRESHOLD = 0.5
MATTE_ANYTHING_KERNEL = 10
MATTE_ANYTHING_ITERATIONS = 5
# "matteanything": MatteAnything's fixed erode/dilate (the paper's); "scaled": this project's band scaled to the
# object (imaging/trimap.py), better for objects far smaller or larger than MatteAnything's ~50 px band suits
TRIMAPS = ("matteanything", "scaled")
BOX_MARGIN = 0.03  # of the box's size, kept around it when clipping SAM's mask
# "best": the highest-scoring box (one object, the paper's case); "union": every box above the threshold
BOX_POLICIES = ("best", "union")


@dataclass
class ForegroundOptions:
    box_threshold: float = BOX_THRESHOLD
    text_threshold: float = TEXT_THRESHOLD
    policy: str = "best"
    transparent_query: str = TRANSPARENT_QUERY  # "" turns the transparency refinement off
    transparent_threshold: float = TRANSPARENT_THRESHOLD
    trimap: str = "matteanything"  # TRIMAPS
    band: int | None = None  # trimap band half-width, scaled trimap only; None scales it to the object

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> "ForegroundOptions":
        known = {k: v for k, v in options.items() if k in cls.__dataclass_fields__}
        opts = cls(**known)
        if opts.policy not in BOX_POLICIES:
            raise InputError(f"policy must be one of {BOX_POLICIES}, got {opts.policy!r}")
        if not isinstance(opts.transparent_query, str):
            raise InputError(f"transparent_query must be a phrase (\"\" turns it off), got {opts.transparent_query!r}")
        if opts.trimap not in TRIMAPS:
            raise InputError(f"trimap must be one of {TRIMAPS}, got {opts.trimap!r}")
        for name in ("box_threshold", "text_threshold", "transparent_threshold"):
            value = getattr(opts, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise InputError(f"{name} must be in 0..1, got {value!r}")
        return opts


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    score: float
    label: str


def dino_query(phrase: str) -> str:
    """Grounding DINO expects lower-case phrases, each ended by a period."""
    text = " ".join(phrase.lower().split())
    return text if text.endswith(".") else text + "."


def detect(model: Any, processor: Any, pil: Any, phrase: str, box_threshold: float,
           text_threshold: float) -> list[Detection]:
    import torch

    inputs = processor(images=pil, text=dino_query(phrase), return_tensors="pt").to(model.device)
    with torch.no_grad():
        outputs = model(**inputs)
    result = processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=box_threshold, text_threshold=text_threshold,
        target_sizes=[(pil.height, pil.width)])[0]
    labels = result["text_labels"] if "text_labels" in result else result["labels"]  # "labels" warns in 5.x
    dets = [Detection(tuple(float(v) for v in box.tolist()), float(score), str(label))
            for box, score, label in zip(result["boxes"], result["scores"], labels, strict=True)]
    return sorted(dets, key=lambda d: -d.score)


def choose_box(dets: list[Detection], policy: str, w: int, h: int) -> tuple[int, int, int, int]:
    boxes = [dets[0].box] if policy == "best" else [d.box for d in dets]
    x0 = max(0, int(np.floor(min(b[0] for b in boxes))))
    y0 = max(0, int(np.floor(min(b[1] for b in boxes))))
    x1 = min(w, int(np.ceil(max(b[2] for b in boxes))))
    y1 = min(h, int(np.ceil(max(b[3] for b in boxes))))
    return x0, y0, x1, y1


def segment(model: Any, processor: Any, pil: Any, box: tuple[int, int, int, int]) -> np.ndarray:
    """SAM's single best mask for the box (HxW bool)."""
    import torch

    inputs = processor(images=pil, input_boxes=[[list(box)]], return_tensors="pt").to(model.device)
    with torch.no_grad():
        outputs = model(**inputs, multimask_output=False)
    masks = processor.image_processor.post_process_masks(
        outputs.pred_masks.cpu(), inputs["original_sizes"].cpu(), inputs["reshaped_input_sizes"].cpu())
    mask = masks[0][0, 0].numpy().astype(bool)
    # the object lies in its box: drop SAM's stray pixels outside it (a small margin keeps soft edges)
    x0, y0, x1, y1 = box
    m = max(2, int(BOX_MARGIN * max(x1 - x0, y1 - y0)))
    inside = np.zeros_like(mask)
    inside[max(0, y0 - m):y1 + m, max(0, x0 - m):x1 + m] = True
    return mask & inside


def matte_anything_trimap(mask: np.ndarray) -> np.ndarray:
    """MatteAnything's trimap of a hard mask: 1 where the mask survives 5 erosions by a 10x10 square, 0.5 in the rest
    of its 5 dilations, 0 outside (about 25 px either side of the edge, whatever the object's size)."""
    kernel = np.ones((MATTE_ANYTHING_KERNEL, MATTE_ANYTHING_KERNEL), np.uint8)
    hard = (mask > 0.5).astype(np.uint8)
    trimap = np.zeros(mask.shape, np.float32)
    trimap[cv2.dilate(hard, kernel, iterations=MATTE_ANYTHING_ITERATIONS) > 0] = UNKNOWN
    trimap[cv2.erode(hard, kernel, iterations=MATTE_ANYTHING_ITERATIONS) > 0] = 1.0
    return trimap


def mark_transparent(trimap: np.ndarray, mask: np.ndarray, boxes: list[tuple[float, ...]]) -> np.ndarray:
    """Where a transparent-thing box overlaps the object, its true alpha is unknown (glass, veils, smoke)."""
    out = trimap.copy()
    h, w = trimap.shape
    for x0, y0, x1, y1 in boxes:
        region = np.zeros((h, w), bool)
        region[max(0, int(y0)):min(h, int(np.ceil(y1))), max(0, int(x0)):min(w, int(np.ceil(x1)))] = True
        out[region & mask] = UNKNOWN
    return out


def determine_foreground(models: Any, image: np.ndarray, phrase: str, options: ForegroundOptions | None = None,
                         progress: ProgressFn = no_progress) -> tuple[np.ndarray, dict[str, Any]]:
    """-> (alpha HxW float32, info). `models` gives grounding_dino(), sam(), vitmatte()."""
    options = options or ForegroundOptions()
    if not phrase.strip():
        raise InputError("the foreground phrase is empty")
    h, w = image.shape[:2]
    pil = to_pil(image)
    progress("detect", 0.0)
    dino, dino_proc = models.grounding_dino()
    dets = detect(dino, dino_proc, pil, phrase, options.box_threshold, options.text_threshold)
    if not dets:
        raise InputError(f"Grounding DINO found no '{phrase}' in the image (box threshold {options.box_threshold})",
                         "rephrase it, lower the threshold, or select the object yourself")
    box = choose_box(dets, options.policy, w, h)
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        raise InputError(f"the box found for '{phrase}' is degenerate: {box}")
    progress("segment", 0.3)
    sam, sam_proc = models.sam()
    mask = segment(sam, sam_proc, pil, box)
    if not mask.any():
        raise InputError(f"SAM found no object inside the box {box} for '{phrase}'", "select the object yourself")
    progress("trimap", 0.55)
    if options.trimap == "matteanything" and options.band is None:
        trimap = matte_anything_trimap(mask)
    else:
        trimap = trimap_from_mask(mask.astype(np.float32), options.band)
    transparent: list[Detection] = []
    if options.transparent_query:
        transparent = detect(dino, dino_proc, pil, options.transparent_query, options.transparent_threshold,
                             options.text_threshold)
        trimap = mark_transparent(trimap, mask, [d.box for d in transparent])
    progress("matting", 0.7)
    vm, vm_proc = models.vitmatte()
    alpha = learned_matte(vm, vm_proc, image, trimap)
    progress("foreground found", 1.0)
    info = {"phrase": phrase, "box": list(box), "score": round(dets[0].score, 4), "policy": options.policy,
            "trimap": options.trimap if options.band is None else f"scaled, band {options.band}",
            "detections": len(dets), "transparent_boxes": len(transparent),
            "unknown_fraction": round(float(np.mean(trimap == UNKNOWN)), 4)}
    return alpha, info
