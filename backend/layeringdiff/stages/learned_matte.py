"""ViTMatte's alpha from a picture and a trimap: stage 2's matting, and a split's learned matting (the `matting`
option) where the closed form cannot follow pixel-wide strands.

Worked on the unknown band's box only, in tiles of at most TILE pixels a side: ViTMatte's global-attention blocks
cost the square of its tokens (a 4096^2 picture whole: 65536 tokens, about 100 GB of attention scores), a tile a
fixed amount whatever the canvas. Tiles overlap by OVERLAP pixels and are blended linearly across it, so no seam
shows where two tiles meet; a tile with no unknown pixel is not run.
"""

from itertools import product
from typing import Any

import numpy as np

from ..imaging.trimap import UNKNOWN, unknown_box
from ..options import MatteFn
from ..progress import ProgressFn, no_progress

TILE = 1024  # ViTMatte's input side at most (its processor pads to a multiple of 32)
OVERLAP = 64
CONTEXT = 128  # kept around the unknown band's box: what the model sees of the sure regions beyond the band


def to_pil(image: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray((np.clip(image[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8))


def spans(length: int, tile: int = TILE, overlap: int = OVERLAP) -> list[tuple[int, int]]:
    """[start, stop) of the tiles along one side: as few as cover it with `overlap` between neighbours, spread
    evenly (each `tile` long, or one span of the whole side when it fits)."""
    if length <= tile:
        return [(0, length)]
    count = -(-(length - overlap) // (tile - overlap))
    starts = np.linspace(0, length - tile, count).round().astype(int)
    return [(int(s), int(s) + tile) for s in starts]


def ramp(start: int, stop: int, length: int, overlap: int = OVERLAP) -> np.ndarray:
    """A tile's blending weights along one side: 1, falling linearly towards a side shared with a neighbour
    (not at the picture's own edge), never 0."""
    weights = np.ones(stop - start, np.float32)
    fall = np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)
    n = min(overlap, stop - start)
    if start > 0:
        weights[:n] = np.minimum(weights[:n], fall[:n])
    if stop < length:
        weights[-n:] = np.minimum(weights[-n:], fall[:n][::-1])
    return weights


def predict(model: Any, processor: Any, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """ViTMatte's raw alpha (HxW float32) for one tile."""
    import torch
    from PIL import Image

    tri = Image.fromarray(np.round(trimap * 255).astype(np.uint8))
    inputs = processor(images=to_pil(image), trimaps=tri, return_tensors="pt").to(model.device)
    with torch.no_grad():
        alphas = model(**inputs).alphas
    h, w = trimap.shape
    return alphas[0, 0, :h, :w].float().cpu().numpy()  # the processor pads to a multiple of 32


def learned_matte(model: Any, processor: Any, image: np.ndarray, trimap: np.ndarray,
                  progress: ProgressFn = no_progress, tile: int = TILE) -> np.ndarray:
    """ViTMatte's alpha (HxW float32) for an RGB image in [0,1] and a trimap (0 / 0.5 / 1): the trimap's sure
    pixels exactly, the model's alpha inside the unknown band."""
    alpha = (trimap >= 1.0).astype(np.float32)
    box = unknown_box(trimap, CONTEXT)
    if box is None:
        return alpha
    sub_image, sub_trimap = image[box], trimap[box]
    bh, bw = sub_trimap.shape
    total = np.zeros((bh, bw), np.float32)
    weight = np.zeros((bh, bw), np.float32)
    todo = [(ys, xs) for ys, xs in product(spans(bh, tile), spans(bw, tile))
            if np.any(sub_trimap[ys[0]:ys[1], xs[0]:xs[1]] == UNKNOWN)]
    for done, ((y0, y1), (x0, x1)) in enumerate(todo):
        progress("matting", done / len(todo))
        part = (slice(y0, y1), slice(x0, x1))
        blend = np.outer(ramp(y0, y1, bh), ramp(x0, x1, bw))
        total[part] += blend * predict(model, processor, sub_image[part], sub_trimap[part])
        weight[part] += blend
    sub_unknown = sub_trimap == UNKNOWN
    found = alpha[box]
    found[sub_unknown] = np.clip(total[sub_unknown] / weight[sub_unknown], 0.0, 1.0)
    return alpha


def vitmatte_matte(model: Any, processor: Any) -> MatteFn:
    """A split's matting by ViTMatte (split_layer's `matte`)."""
    return lambda rgb, trimap, progress: learned_matte(model, processor, rgb, trimap, progress)
