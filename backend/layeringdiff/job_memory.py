"""A job's peak memory, estimated before it starts, so the server refuses what would not fit its budget.

The split's figures are measured: `python benchmarks/bench_job_memory.py` runs the benchmark scenes
(objects filling 1024^2 to 4096^2 canvases, a small object on a 4096^2 canvas, box and mask hints, u8
and f32 layers) through the server's job code and prints the measured peak beside this estimate. Run it
again whenever the pipeline changes and update the constants here; the estimate must stay within 2x of
every measured peak (above it, preferably: refusing a job that would fit is the cheaper mistake).
"""

from dataclasses import dataclass
from typing import Any

from layering_protocol import Generate, Peel, Split

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


def _weights(names: list[str], loaded: set[str]) -> int:
    """Weights read into memory when a model is loaded (once; loaded ones are in the RSS already)."""
    return int(sum(REGISTRY[n].size_gb for n in names if n not in loaded) * 1e9)


def estimate_job(message: Any, loaded: set[str] = frozenset(), on_gpu: bool = False) -> Estimate:  # type: ignore
    """Peak bytes a job adds to the server's RSS. `loaded`: models already in memory; `on_gpu`: the
    models' working memory is the GPU's."""
    per_model_pixel = 0 if on_gpu else MODEL_BYTES_PER_PIXEL
    if isinstance(message, Generate):
        pixels = message.width * message.height
        control = message.options.get("control")
        models = ["sdxl", *([f"controlnet-{control}"] if control in ("canny", "depth") else []), *STAGE2]
        return Estimate(split_bytes(pixels) + pixels * per_model_pixel + _weights(models, loaded),
                        f"generating {message.width}x{message.height}")
    if isinstance(message, (Split, Peel)):
        w, h = message.image.width, message.image.height
        total, models = split_bytes(w * h), []
        if message.phrase and message.mask is None and message.box is None:
            models += STAGE2
        layering = message.options.get("layering")
        if layering == "fbdd":
            models.append("layering")
        elif layering == "zero-shot":
            models.append("sd2-inpaint")
        if models:
            total += w * h * per_model_pixel + _weights(models, loaded)
        return Estimate(total, f"a {w}x{h} {message.TYPE}")
    return Estimate(0, type(message).__name__)
