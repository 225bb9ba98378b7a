"""A zero-shot layer method, used without FBDD weights (this project's, close to the paper's third Table 4
baseline, Germer et al. + inpainting): the foreground by multi-level estimation, the background un-mixed where
partly visible and inpainted by Stable Diffusion 2 where hidden (the hole dilated)."""

from typing import Any

import numpy as np
import torch

from ..imaging.foreground import estimate_foreground
from ..options import PROJECTION, LayerMethod
from ..progress import ProgressFn
from .classical import FillFn, complete_background
from .layering import pad8

ZERO_SHOT_STEPS = 25


def inpainting_fill(pipe: Any, prompt: str, steps: int, seed: int, progress: ProgressFn) -> FillFn:
    """A `fill` for classical.complete_background: Stable Diffusion 2 inpainting of the hidden region,
    prompted with the scene without its foreground."""

    def fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        from PIL import Image

        padded, h, w = pad8(image)
        mask, _, _ = pad8(hole.astype(np.float32))
        generator = torch.Generator(device="cpu").manual_seed(int(seed))

        def on_step_end(_pipe: Any, step: int, _t: Any, kwargs: dict) -> dict:
            progress("inpainting", (step + 1) / steps)
            return kwargs

        out = pipe(prompt=prompt, image=Image.fromarray((padded * 255 + 0.5).astype(np.uint8)),
                   mask_image=Image.fromarray((mask * 255).astype(np.uint8)), height=padded.shape[0],
                   width=padded.shape[1], num_inference_steps=steps, generator=generator, output_type="np",
                   callback_on_step_end=on_step_end).images[0][:h, :w]
        result = image.copy()
        result[hole] = np.clip(out, 0, 1)[hole]
        return result

    return fill


def zero_shot_method(pipe: Any, prompt: str, seed: int, steps: int = ZERO_SHOT_STEPS) -> LayerMethod:
    """Multi-level foreground estimate; background un-mixed where partly visible and inpainted by SD2 where
    hidden (alpha >= 0.95, dilated), as classical.complete_background blends them."""

    def layers(rgb: np.ndarray, alpha: np.ndarray, progress: ProgressFn) -> tuple[np.ndarray, np.ndarray]:
        fg, bg = estimate_foreground(rgb, alpha)
        return fg, complete_background(rgb, alpha, fg, bg, inpainting_fill(pipe, prompt, steps, seed, progress))

    # the projection, as for the classical method whose band estimate it shares: the least-change step raised
    # both layers' errors there on `layeringdiff evaluate` (README, How the offline split works)
    return LayerMethod("zero-shot (sd2-inpaint)", layers, composition=PROJECTION)
