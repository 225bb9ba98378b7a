"""A job's peak memory, estimated before it starts, so the server refuses what would not fit its budget.

The split's figures are measured: `python benchmarks/bench_job_memory.py` runs the benchmark scenes
(objects filling 1024^2 to 4096^2 canvases, a small object on a 4096^2 canvas, box and mask hints, u8
and f32 layers) through the server's job code and prints the measured peak beside this estimate. Run it
again whenever the pipeline changes and update the constants here; the estimate must stay within 2x of
every measured peak (above it, preferably: refusing a job that would fit is the cheaper mistake).
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layering_protocol import Generate, Peel, Split

from .errors import NotAvailable
from .models import REGISTRY
from .stages.split import CROP_MARGIN_PX

# Offline split, RSS above the job's start (its input already received), fitted on the benchmark scenes (2 cores,
# 2026-11-26, after the texture fill and the memory work of the big-canvas issue): the whole canvas's layers and
# conversions, plus the work on the object's crop (matting, estimation, the fill), plus a wider input frame.
SPLIT_FIXED_BYTES = 100 << 20
SPLIT_CANVAS_BYTES_PER_PIXEL = 46
SPLIT_CROP_BYTES_PER_PIXEL = 32
WIDE_INPUT_BYTES_PER_BYTE = 1  # per byte of the layer's pixels beyond 8-bit RGBA (u16, f16, f32 layers)
# A diffusion or vision model working at the job's size on the CPU (activations, VAE decoding): an allowance,
# not measured here (no weights on the machines this was written on); on a GPU they live in its memory.
MODEL_BYTES_PER_PIXEL = 3072
# A model that works at its own fixed size on the object's crop, on the CPU (LaMa: 512 x 512 whatever the canvas):
# its working memory, an allowance as above.
FIXED_SIZE_MODEL_BYTES = {"lama": 2 << 30}
STAGE2 = ("grounding-dino", "sam", "vitmatte")


@dataclass(frozen=True)
class Estimate:
    nbytes: int
    what: str  # "a 4096x4096 split" ...


def split_bytes(pixels: int, crop_pixels: int | None = None, wide_bytes: int = 0) -> int:
    """A split of a canvas of `pixels` whose object's box (plus context) has `crop_pixels` (None: the canvas);
    `wide_bytes`: bytes of the layer's frame beyond 8-bit RGBA."""
    crop = pixels if crop_pixels is None else min(pixels, crop_pixels)
    return (SPLIT_FIXED_BYTES + SPLIT_CANVAS_BYTES_PER_PIXEL * pixels + SPLIT_CROP_BYTES_PER_PIXEL * crop
            + WIDE_INPUT_BYTES_PER_BYTE * wide_bytes)


def crop_pixels(message: Any) -> int | None:
    """Pixels of the object's box plus context, from the hint (a selection's bounding box, or the box); None when
    the whole canvas is worked on (a phrase, or a selection that cannot be read)."""
    w, h = message.image.width, message.image.height
    if message.box is not None and len(message.box) == 4:
        x0, y0, x1, y1 = (int(v) for v in message.box)
        return _grown(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), w, h)
    mask = message.mask
    if mask is None or mask.dtype != "u8" or (mask.width, mask.height) != (w, h):
        return None
    import numpy as np  # the server has it; a 4096^2 selection is scanned in milliseconds

    from .wire import mask_channel

    data = np.frombuffer(mask.data, np.uint8).reshape(h, w, mask.channels)[..., mask_channel(mask.order)]
    rows, cols = np.flatnonzero(data.any(axis=1)), np.flatnonzero(data.any(axis=0))
    if rows.size == 0:
        return 0
    return _grown(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1, w, h)


def _grown(x0: int, y0: int, x1: int, y1: int, w: int, h: int) -> int:
    m = CROP_MARGIN_PX
    return max(0, min(w, x1 + m) - max(0, x0 - m)) * max(0, min(h, y1 + m) - max(0, y0 - m))


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx")


def registry_bytes(name: str) -> int:
    """A model's weights as the registry gives them (the default models' sizes)."""
    return int(REGISTRY[name].size_gb * 1e9)


def folder_bytes(folder: str | Path) -> int:
    """Weight files under a model folder (a Hugging Face snapshot links them: sizes follow the links)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            if name.endswith(WEIGHT_SUFFIXES):
                try:
                    total += os.path.getsize(os.path.join(root, name))
                except OSError:
                    pass
    return total


def weight_bytes(models: Any) -> Callable[[str], int]:
    """Bytes a job reads into memory to load each model: 0 when it is loaded already (its weights are in
    the RSS) or missing (the job fails with not_available before loading anything), else its folder's
    weight files."""
    loaded = models.loaded()

    def size(name: str) -> int:
        if name in loaded:
            return 0
        try:
            return folder_bytes(models.resolve(name))
        except NotAvailable:
            return 0

    return size


def models_needed(message: Any) -> list[str]:
    if isinstance(message, Generate):
        control = message.options.get("control")
        return ["sdxl", *([f"controlnet-{control}"] if control in ("canny", "depth") else []), *STAGE2]
    if not isinstance(message, (Split, Peel)):
        return []
    names = list(STAGE2) if message.phrase and message.mask is None and message.box is None else []
    layering = message.options.get("layering")
    if layering == "fbdd":
        names.append("layering")
    elif layering == "zero-shot":
        names.append("sd2-inpaint")
    elif message.options.get("fill") == "lama":
        names.append("lama")
    return names


def estimate_job(message: Any, weights: Callable[[str], int] = registry_bytes, on_gpu: bool = False) -> Estimate:
    """Peak bytes a job adds to the server's RSS. `weights(name)`: bytes loading that model reads into
    memory; `on_gpu`: the models' working memory is the GPU's."""
    names = models_needed(message)
    whole = [n for n in names if n not in FIXED_SIZE_MODEL_BYTES]  # models that see the whole image at its size
    models = sum(weights(n) for n in names) + sum(FIXED_SIZE_MODEL_BYTES.get(n, 0) for n in names)
    if whole and not on_gpu:
        models += MODEL_BYTES_PER_PIXEL * _pixels(message)
    if isinstance(message, Generate):
        return Estimate(split_bytes(_pixels(message)) + models, f"generating {message.width}x{message.height}")
    if isinstance(message, (Split, Peel)):
        image = message.image
        w, h = image.width, image.height
        wide = max(0, image.expected_nbytes - 4 * w * h)
        crop = None if whole else crop_pixels(message)  # stage 2 and generative layering see it all
        return Estimate(split_bytes(w * h, crop, wide) + models, f"a {w}x{h} {message.TYPE}")
    return Estimate(0, type(message).__name__)


def _pixels(message: Any) -> int:
    image = getattr(message, "image", None)
    if image is not None:
        return int(image.width * image.height)
    return int(getattr(message, "width", 0)) * int(getattr(message, "height", 0))
