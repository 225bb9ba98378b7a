"""Split into all layers, with no hint (`split --auto`, the docker's Split into all layers): the picture's objects
found by SAM's automatic mask generation, ordered front to back by monocular depth (Depth Anything V2) together
with the occlusion cues of stages/order.py, then peeled like labelled objects (stages/peel.py).

Automatic masks as SAM's paper makes them, on one crop (the whole picture): a grid of single-point prompts, three
masks each, the one SAM scores best kept when its predicted IoU and its stability (the IoU of the mask thresholded
a little above and a little below) are high enough; then non-maximum suppression between the masks. Filtered for
layers: too small a mask is no object; a mask mostly inside a larger one is a part of it (merged into it); a mask
that covers most of the picture or runs along three of its sides is stuff (sky, wall, floor), left to the
background.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..progress import ProgressFn, no_progress
from .order import best_order, occlusion_verdicts

POINTS_PER_SIDE = 16  # SAM's automatic generator uses 32 on 1024 px; 16 finds the objects a layer stack wants
POINT_BATCH = 32  # SAM's three masks a prompt are brought to the working size: 100 MB a batch at 512 px
PRED_IOU_MIN = 0.88  # SAM's automatic generator's defaults
STABILITY_MIN = 0.95
STABILITY_OFFSET = 1.0  # mask logits thresholded at 0 +- this
NMS_IOU = 0.7
MIN_AREA = 0.002  # of the picture: smaller masks are no object
PART_OF = 0.8  # a mask this much inside a larger one is one of its parts
STUFF_AREA = 0.5  # of the picture: larger masks are stuff (the background's)
STUFF_SIDES = 3  # a mask along this many of the picture's sides is stuff
MAX_OBJECTS = 255
WORK_SIDE = 512  # masks, depth and order are found on the picture brought down to this side at most: 256
# prompts' masks there are 67 MB, at 4096 px they would be 4 GB; matting refines each edge at full size


@dataclass
class AutoOptions:
    points_per_side: int = POINTS_PER_SIDE
    pred_iou_min: float = PRED_IOU_MIN
    stability_min: float = STABILITY_MIN
    min_area: float = MIN_AREA


def grid_points(h: int, w: int, per_side: int) -> np.ndarray:
    """per_side^2 points (x, y) at the centres of a per_side x per_side grid over the picture."""
    ys = (np.arange(per_side) + 0.5) * h / per_side
    xs = (np.arange(per_side) + 0.5) * w / per_side
    return np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)


def stability(logits: np.ndarray, offset: float = STABILITY_OFFSET) -> np.ndarray:
    """SAM's stability score of each mask's logits (N, H, W): |logits > offset| / |logits > -offset|."""
    high = (logits > offset).sum(axis=(1, 2))
    low = (logits > -offset).sum(axis=(1, 2))
    return np.where(low > 0, high / np.maximum(low, 1), 0.0)


def point_masks(sam: Any, processor: Any, pil: Any, points: np.ndarray, options: "AutoOptions",
                progress: ProgressFn = no_progress) -> tuple[np.ndarray, np.ndarray]:
    """For each point prompt, SAM's best of its three masks, kept when its predicted IoU and stability reach the
    options' thresholds: (N, H, W) bool masks at the picture's size and their predicted IoUs (N,). The picture is
    embedded once; a batch's logits are let go once its masks are judged."""
    import torch

    inputs = processor(images=pil, return_tensors="pt").to(sam.device)
    with torch.no_grad():
        embeddings = sam.get_image_embeddings(inputs["pixel_values"])
    kept, scores = [np.zeros((0, pil.height, pil.width), bool)], [np.zeros(0, np.float32)]
    for start in range(0, len(points), POINT_BATCH):
        batch = points[start:start + POINT_BATCH]
        prompts = processor(images=pil, input_points=[[[[float(x), float(y)]] for x, y in batch]],
                            return_tensors="pt").to(sam.device)
        with torch.no_grad():
            out = sam(image_embeddings=embeddings, input_points=prompts["input_points"], multimask_output=True)
        masks = processor.image_processor.post_process_masks(
            out.pred_masks.cpu(), prompts["original_sizes"].cpu(), prompts["reshaped_input_sizes"].cpu(),
            binarize=False)[0]  # (points, 3, H, W) logits
        iou = out.iou_scores[0].float().cpu()  # (points, 3)
        best = iou.argmax(dim=1)
        logits = masks[torch.arange(len(batch)), best].float().numpy()
        score = iou[torch.arange(len(batch)), best].numpy()
        good = (score >= options.pred_iou_min) & (stability(logits) >= options.stability_min)
        kept.append(logits[good] > 0)
        scores.append(score[good])
        progress("segment", min(1.0, (start + len(batch)) / len(points)))
    return np.concatenate(kept), np.concatenate(scores)


def box_iou_nms(masks: np.ndarray, scores: np.ndarray, iou_max: float = NMS_IOU) -> list[int]:
    """Indices of the masks kept by non-maximum suppression on their pixels (best score first)."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    flat = masks.reshape(len(masks), -1)
    areas = flat.sum(axis=1)
    for i in order:
        if areas[i] == 0:
            continue
        if all((flat[i] & flat[j]).sum() / (areas[i] + areas[j] - (flat[i] & flat[j]).sum()) <= iou_max
               for j in kept):
            kept.append(int(i))
    return kept


def is_stuff(mask: np.ndarray, stuff_area: float = STUFF_AREA) -> bool:
    """Sky, walls, floors: most of the picture, or along three of its four sides."""
    sides = sum(bool(edge.mean() > 0.5) for edge in (mask[0], mask[-1], mask[:, 0], mask[:, -1]))
    return mask.mean() > stuff_area or sides >= STUFF_SIDES


def object_masks(masks: np.ndarray, scores: np.ndarray, min_area: float = MIN_AREA) -> list[np.ndarray]:
    """The masks that are objects for layers: no stuff, none too small, parts merged into their whole; the
    largest first. (masks: (N, H, W) bool, scores: their quality, best first after NMS.)"""
    if len(masks) == 0:
        return []
    keep = [masks[i] for i in box_iou_nms(masks, scores)]
    keep = [m for m in keep if m.mean() >= min_area and not is_stuff(m)]
    keep.sort(key=lambda m: -int(m.sum()))
    wholes: list[np.ndarray] = []
    for mask in keep:  # the largest first: a part finds its whole already there
        whole = next((w for w in wholes if (mask & w).sum() >= PART_OF * mask.sum()), None)
        if whole is None:
            wholes.append(mask.copy())
        else:
            whole |= mask
    return [w for w in wholes if not is_stuff(w)][:MAX_OBJECTS]  # a whole grown by its parts may be stuff now


def depth_map(model: Any, processor: Any, pil: Any) -> np.ndarray:
    """Depth Anything's relative inverse depth at the picture's size (larger = nearer), HxW float32."""
    import torch

    inputs = processor(images=pil, return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model(**inputs)
    depth = processor.post_process_depth_estimation(out, target_sizes=[(pil.height, pil.width)])
    return depth[0]["predicted_depth"].float().cpu().numpy()


def depth_verdicts(labels: np.ndarray, values: list[int], nearness: np.ndarray) -> dict[tuple[int, int], float]:
    """(a, b) -> positive when a is nearer than b by its median nearness, for every pair; each verdict's size at
    most 1, so that a touching pair's occlusion cue (its boundary's length in pixels) outweighs it."""
    medians = {k: float(np.median(nearness[labels == k])) for k in values}
    spread = max(medians.values()) - min(medians.values()) or 1.0
    return {(a, b): (medians[a] - medians[b]) / spread for i, a in enumerate(values) for b in values[i + 1:]
            if medians[a] != medians[b]}


def labels_from(objects: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Object k+1 where mask k is and no earlier one (the largest first keeps its whole)."""
    labels = np.zeros(shape, np.uint8)
    for k, mask in enumerate(objects, 1):
        labels[mask & (labels == 0)] = k
    return labels


def find_objects(models: Any, image: np.ndarray, options: AutoOptions | None = None,
                 progress: ProgressFn = no_progress) -> tuple[np.ndarray, list[int], dict[str, Any]]:
    """(labels HxW uint8, the labels front to back, info) of the picture's objects. `models` gives sam() and
    depth_anything()."""
    import cv2

    from .foreground import to_pil

    options = options or AutoOptions()
    h, w = image.shape[:2]
    scale = min(1.0, WORK_SIDE / max(h, w))  # (WORK_SIDE says why)
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    small = cv2.resize(image[..., :3], (sw, sh), interpolation=cv2.INTER_AREA) if scale < 1 else image[..., :3]
    pil = to_pil(small)
    progress("segment", 0.0)
    sam, sam_processor = models.sam()
    points = grid_points(sh, sw, options.points_per_side)
    masks, scores = point_masks(sam, sam_processor, pil, points, options, lambda stage, f: progress(stage, 0.7 * f))
    objects = object_masks(masks, scores, options.min_area)
    if not objects:
        raise InputError("SAM found no object to split off in the picture",
                         "select the objects yourself (selection masks or a label layer)")
    labels = labels_from(objects, (sh, sw))
    values = [k for k in range(1, len(objects) + 1) if (labels == k).any()]
    progress("depth", 0.75)
    nearness = depth_map(*models.depth_anything(), pil)
    verdicts = depth_verdicts(labels, values, nearness)
    verdicts.update(occlusion_verdicts(labels, values))  # where objects touch, which one continues decides
    order = best_order(labels, values, verdicts)
    if scale < 1:  # the labels back at the picture's size (matting refines each object's edge there)
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
        present = set(np.unique(labels).tolist())  # a speck may vanish on the way up
        order = [k for k in order if k in present]
    progress("objects found", 1.0)
    info = {"objects_found": len(order), "prompts": int(len(points)), "masks_kept": int(len(masks)),
            "order": "depth and occlusion"}
    return labels, order, info
