"""Job requests -> stage calls. Knows the protocol messages and the stages, nothing about sockets."""

from dataclasses import dataclass, field
from typing import Any

from layering_protocol import Generate, Image, Peel, Split

from .errors import InputError, NotAvailable
from .progress import ProgressFn
from .stages.classical import SplitOptions, split_layer
from .wire import QUANTIZE, from_array, to_array, to_mask

MODEL_STACK_MISSING = "the model stack (SDXL, Grounding DINO, SAM, ViTMatte), which this backend does not have yet"


@dataclass
class JobOutput:
    foreground: Image
    background: Image
    alpha: Image
    info: dict[str, Any] = field(default_factory=dict)


def available_jobs() -> list[str]:
    return ["split", "peel"]


def _split(msg: Split | Peel, progress: ProgressFn) -> JobOutput:
    if msg.mask is None and msg.box is None:
        if msg.phrase:
            raise NotAvailable(f"splitting by phrase ('{msg.phrase}') needs {MODEL_STACK_MISSING}",
                               "select the object in Krita (or give a box) to split it offline")
        raise InputError("no foreground hint: give a mask (selection), a box or a phrase")
    if msg.mask is not None and msg.box is not None:
        raise InputError("give a mask or a box, not both")
    if msg.box is not None and len(msg.box) != 4:
        raise InputError(f"box must be [x0, y0, x1, y1], got {msg.box}")
    image = to_array(msg.image)
    mask = None
    if msg.mask is not None:
        if (msg.mask.width, msg.mask.height) != (msg.image.width, msg.image.height):
            raise InputError(
                f"mask is {msg.mask.width}x{msg.mask.height}, layer is {msg.image.width}x{msg.image.height}"
            )
        mask = to_mask(msg.mask)
    options = {"quantize": QUANTIZE[msg.image.dtype], **msg.options}
    result = split_layer(image, mask=mask, box=tuple(msg.box) if msg.box else None,  # type: ignore[arg-type]
                         options=SplitOptions.from_dict(options), progress=progress)
    dtype = msg.image.dtype
    order = "BGRA" if msg.image.order.startswith("BGR") else "RGBA"
    info = dict(result.info)
    if isinstance(msg, Peel):
        info["index"] = msg.index
    return JobOutput(
        from_array(result.foreground, dtype, order),
        from_array(result.background, dtype, order),
        from_array(result.alpha, dtype, "L"),
        info,
    )


def run_job(message: Any, progress: ProgressFn) -> JobOutput:
    """Run one job request; raises InputError / NotAvailable / JobCancelled on purpose."""
    if isinstance(message, (Split, Peel)):
        return _split(message, progress)
    if isinstance(message, Generate):
        raise NotAvailable(f"Generate layered needs {MODEL_STACK_MISSING}",
                           "Split selected layer and Peel work offline; generation arrives with the model stack")
    raise InputError(f"'{type(message).TYPE}' is not a job")
