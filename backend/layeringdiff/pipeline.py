"""Job requests -> stage calls. Knows the protocol messages and the stages, nothing about sockets."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from layering_protocol import DTYPE_SIZES, Generate, Image, Peel, Split, parse_prompt

from .errors import InputError
from .models import ModelManager
from .progress import ProgressFn, sub_progress
from .stages.classical import SplitOptions, split_layer
from .wire import QUANTIZE, from_array, to_array, to_mask

SPLIT_OPTION_KEYS = ("alpha_mode", "quantize", "band")
GENERATE_SHARE = 0.7
STAGE2_MODELS = ["grounding-dino", "sam", "vitmatte"]  # of a generate job's progress bar: denoising dominates its time


@dataclass
class JobOutput:
    foreground: Image
    background: Image
    alpha: Image
    info: dict[str, Any] = field(default_factory=dict)


def available_jobs() -> list[str]:
    return ["split", "peel", "generate"]


def _split_options(options: dict[str, Any], dtype: str, **forced: Any) -> SplitOptions:
    chosen = {"quantize": QUANTIZE[dtype], **{k: v for k, v in options.items() if k in SPLIT_OPTION_KEYS}}
    return SplitOptions.from_dict({**chosen, **forced})


def _foreground_options(options: dict[str, Any]) -> Any:
    from .stages.foreground import ForegroundOptions

    return ForegroundOptions.from_dict(options)


def _check_options(options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = set(options) - set(allowed)
    if unknown:
        raise InputError(f"unknown option(s): {', '.join(sorted(unknown))}", f"known: {', '.join(sorted(allowed))}")


FOREGROUND_KEYS = ("box_threshold", "text_threshold", "policy", "transparent_query", "transparent_threshold")


def _layers(result: Any, dtype: str, order: str, info: dict[str, Any]) -> JobOutput:
    return JobOutput(from_array(result.foreground, dtype, order), from_array(result.background, dtype, order),
                     from_array(result.alpha, dtype, "L"), info)


def _split(msg: Split | Peel, progress: ProgressFn, models: ModelManager) -> JobOutput:
    _check_options(msg.options, SPLIT_OPTION_KEYS + FOREGROUND_KEYS)
    if msg.mask is not None and msg.box is not None:
        raise InputError("give a mask or a box, not both")
    if msg.box is not None and len(msg.box) != 4:
        raise InputError(f"box must be [x0, y0, x1, y1], got {msg.box}")
    image = to_array(msg.image)
    dtype = msg.image.dtype
    order = "BGRA" if msg.image.order.startswith("BGR") else "RGBA"
    info: dict[str, Any] = {}
    if msg.mask is not None:
        if (msg.mask.width, msg.mask.height) != (msg.image.width, msg.image.height):
            raise InputError(
                f"mask is {msg.mask.width}x{msg.mask.height}, layer is {msg.image.width}x{msg.image.height}")
        result = split_layer(image, mask=to_mask(msg.mask), options=_split_options(msg.options, dtype),
                             progress=progress)
    elif msg.box is not None:
        result = split_layer(image, box=tuple(msg.box), options=_split_options(msg.options, dtype),  # type: ignore
                             progress=progress)
    elif msg.phrase:
        from .stages.foreground import determine_foreground

        if not np.all(np.isfinite(image)):
            raise InputError("image contains NaN or infinite values")
        models.require(STAGE2_MODELS)
        alpha, info["foreground"] = determine_foreground(models, image, msg.phrase, _foreground_options(
            {k: v for k, v in msg.options.items() if k in FOREGROUND_KEYS}), sub_progress(progress, 0.0, 0.5))
        result = split_layer(image, mask=alpha, options=_split_options(msg.options, dtype, alpha_mode="mask"),
                             progress=sub_progress(progress, 0.5, 1.0))
    else:
        raise InputError("no foreground hint: give a mask (selection), a box or a phrase")
    info.update(result.info)
    if isinstance(msg, Peel):
        info["index"] = msg.index
    return _layers(result, dtype, order, info)


GENERATE_KEYS = ("control", "control_scale", "dtype", "order") + SPLIT_OPTION_KEYS + FOREGROUND_KEYS


def _generate(msg: Generate, progress: ProgressFn, models: ModelManager) -> JobOutput:
    from .stages.foreground import determine_foreground
    from .stages.generate import GenerateParams, generate_composite

    _check_options(msg.options, GENERATE_KEYS)
    try:
        prompt, phrases = parse_prompt(msg.prompt)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    phrase = msg.phrase or (phrases[0] if phrases else "")
    if not phrase:
        raise InputError("name the foreground: put it in brackets in the prompt, e.g. [a red fox] in the snow")
    dtype = msg.options.get("dtype", "u8")
    order = msg.options.get("order", "RGBA")
    if dtype not in DTYPE_SIZES or order not in ("RGBA", "BGRA"):
        raise InputError(f"output dtype/order {dtype}/{order} not supported (u8/u16/f16/f32, RGBA/BGRA)")
    control = msg.options.get("control")
    params = GenerateParams(prompt, msg.width, msg.height, msg.steps, msg.guidance, msg.seed, msg.negative_prompt,
                            control, to_array(msg.control_image) if msg.control_image is not None else None,
                            float(msg.options.get("control_scale", 0.5)))
    params.check()  # before loading gigabytes of weights
    models.require(["sdxl", *([f"controlnet-{control}"] if control else []), *STAGE2_MODELS])
    pipe = models.sdxl(control)
    composite = generate_composite(pipe, params, sub_progress(progress, 0.0, GENERATE_SHARE))
    alpha, fg_info = determine_foreground(models, composite, phrase, _foreground_options(
        {k: v for k, v in msg.options.items() if k in FOREGROUND_KEYS}),
        sub_progress(progress, GENERATE_SHARE, 0.85))
    result = split_layer(composite, mask=alpha, options=_split_options(msg.options, dtype, alpha_mode="mask"),
                         progress=sub_progress(progress, 0.85, 1.0))
    info = {**result.info, "foreground": fg_info, "prompt": prompt, "phrase": phrase, "seed": msg.seed,
            "phrases": phrases, "layering": "classical (FBDD not built yet)"}
    return _layers(result, dtype, order, info)


def run_job(message: Any, progress: ProgressFn, models: ModelManager) -> JobOutput:
    """Run one job request; raises InputError / NotAvailable (incl. ModelMissing) / JobCancelled on purpose."""
    if isinstance(message, (Split, Peel)):
        return _split(message, progress, models)
    if isinstance(message, Generate):
        return _generate(message, progress, models)
    raise InputError(f"'{type(message).TYPE}' is not a job")

