"""Stage 1: the composite image from the prompt with SDXL (diffusers), optionally guided by a ControlNet."""

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..errors import InputError
from ..progress import ProgressFn, no_progress

SIZE_MULTIPLE = 8  # the VAE's downsampling factor
MAX_SIDE = 2048
CANNY_LOW, CANNY_HIGH = 100, 200
CONTROLS = ("canny", "depth")


@dataclass
class GenerateParams:
    prompt: str
    width: int = 1024
    height: int = 1024
    steps: int = 30
    guidance: float = 5.0
    seed: int = 0
    negative_prompt: str = ""
    control: str | None = None  # "canny": edges of control_image; "depth": control_image is a depth map
    control_image: np.ndarray | None = None  # HxWx3 (or HxW) float32 [0,1]
    control_scale: float = 0.5

    def check(self) -> None:
        if not self.prompt.strip():
            raise InputError("the prompt is empty")
        for name, value in (("width", self.width), ("height", self.height)):
            if not (SIZE_MULTIPLE <= value <= MAX_SIDE) or value % SIZE_MULTIPLE:
                raise InputError(f"{name} must be a multiple of {SIZE_MULTIPLE} between {SIZE_MULTIPLE} and "
                                 f"{MAX_SIDE}, got {value}")
        if not 1 <= self.steps <= 200:
            raise InputError(f"steps must be in 1..200, got {self.steps}")
        if self.control is not None:
            if self.control not in CONTROLS:
                raise InputError(f"control must be one of {CONTROLS}, got {self.control!r}")
            if self.control_image is None:
                raise InputError(f"ControlNet '{self.control}' needs a control image")


def control_condition(params: GenerateParams) -> np.ndarray:
    """The ControlNet input (HxWx3 uint8 at the output size): canny edges, or the given depth map."""
    img = params.control_image
    assert img is not None
    img = np.clip(img if img.ndim == 3 else np.dstack([img] * 3), 0, 1)
    if img.shape[2] == 4:  # a layer: lines on transparency go over white paper, a depth map over far (black)
        paper = 1.0 if params.control == "canny" else 0.0
        img = img[..., :3] * img[..., 3:] + paper * (1 - img[..., 3:])
    img = img[..., :3]
    img = cv2.resize(img.astype(np.float32), (params.width, params.height), interpolation=cv2.INTER_AREA)
    u8 = (img * 255 + 0.5).astype(np.uint8)
    if params.control == "canny":
        edges = cv2.Canny(cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY), CANNY_LOW, CANNY_HIGH)
        return np.dstack([edges] * 3)
    return u8


def generate_composite(pipe: Any, params: GenerateParams, progress: ProgressFn = no_progress) -> np.ndarray:
    """SDXL text-to-image -> HxWx3 float32 in [0,1]. Progress per denoising step; cancel raises from the
    step-end callback, which diffusers lets propagate."""
    import torch
    from PIL import Image

    params.check()
    generator = torch.Generator(device="cpu").manual_seed(int(params.seed))

    def on_step_end(_pipe: Any, step: int, _timestep: Any, kwargs: dict) -> dict:
        progress("generate", (step + 1) / params.steps)
        return kwargs

    extra: dict[str, Any] = {}
    if params.control is not None:
        extra = {"image": Image.fromarray(control_condition(params)),
                 "controlnet_conditioning_scale": float(params.control_scale)}
    progress("generate", 0.0)
    out = pipe(prompt=params.prompt, negative_prompt=params.negative_prompt or None, width=params.width,
               height=params.height, num_inference_steps=params.steps, guidance_scale=params.guidance,
               generator=generator, output_type="np", callback_on_step_end=on_step_end, **extra)
    image = np.asarray(out.images[0], dtype=np.float32)
    if not np.all(np.isfinite(image)):
        raise InputError("the generator produced NaN pixels (try fp32 or another seed)")
    return np.clip(image, 0.0, 1.0)
