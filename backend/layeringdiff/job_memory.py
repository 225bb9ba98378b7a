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

# Offline split, RSS above the job's start (its input already received). 2 cores, 2026-11-26: 99-160 B per
# canvas pixel (float32 copies of the layer, the foreground and background RGBA results, the 8-bit output).
SPLIT_BYTES_PER_PIXEL = 136
SPLIT_FIXED_BYTES = 48 << 20
# A diffusion or vision model working at the job's size on the CPU (activations, VAE decoding): an allowance,
# not measured here (no weights on the machines this was written on); on a GPU they live in its memory.
MODEL_BYTES_PER_PIXEL = 3072
STAGE2 = ("grounding-dino", "sam", "vitmatte")


@dataclass(frozen=True)
class Estimate:
    nbytes: int
    what: str  # "a 4096x4096 split" ...


def split_bytes(pixels: int) -> int:
    return SPLIT_FIXED_BYTES + SPLIT_BYTES_PER_PIXEL * pixels


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


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
    return names


def estimate_job(message: Any, weights: Callable[[str], int] = registry_bytes, on_gpu: bool = False) -> Estimate:
    """Peak bytes a job adds to the server's RSS. `weights(name)`: bytes loading that model reads into
    memory; `on_gpu`: the models' working memory is the GPU's."""
    names = models_needed(message)
    models = sum(weights(n) for n in names) + (0 if on_gpu or not names else MODEL_BYTES_PER_PIXEL * _pixels(message))
    if isinstance(message, Generate):
        return Estimate(split_bytes(_pixels(message)) + models, f"generating {message.width}x{message.height}")
    if isinstance(message, (Split, Peel)):
        w, h = message.image.width, message.image.height
        return Estimate(split_bytes(w * h) + models, f"a {w}x{h} {message.TYPE}")
    return Estimate(0, type(message).__name__)


def _pixels(message: Any) -> int:
    image = getattr(message, "image", None)
    if image is not None:
        return int(image.width * image.height)
    return int(getattr(message, "width", 0)) * int(getattr(message, "height", 0))
