"""Job requests -> stage calls. Knows the protocol messages and the stages, nothing about sockets."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from layering_protocol import DTYPE_SIZES, Generate, Image, Peel, Split, SplitLayers, background_prompt, parse_prompt

from .errors import InputError
from .imaging.compose import composite_stack
from .models import ModelManager
from .options import OPTION_KEYS, LayerMethod, MatteFn, SplitOptions
from .progress import ProgressFn, sub_progress
from .stages.split import split_layer
from .wire import QUANTIZE, Span, from_array, to_array, to_mask, to_unit_array, unmap_colours

SPLIT_OPTION_KEYS = OPTION_KEYS
LAYERING_KEYS = ("layering", "layering_steps", "layering_size")
LAYERING_CHOICES = ("auto", "fbdd", "zero-shot", "classical")
LAYERING_STEPS = 25
GENERATE_SHARE = 0.7  # of a generate job's progress bar: denoising dominates its time
STAGE2_MODELS = ["grounding-dino", "sam", "vitmatte"]
AUTO_MODELS = ["sam", "depth-anything"]  # split_layers' auto: automatic masks and their depth order
AUTO_SHARE = 0.3  # of an automatic split's progress bar: finding the objects


@dataclass
class JobOutput:
    foreground: Image
    background: Image
    alpha: Image
    info: dict[str, Any] = field(default_factory=dict)
    behind: list[Image] = field(default_factory=list)  # further foregrounds, front to back


def available_jobs() -> list[str]:
    return ["split", "peel", "split_layers", "generate"]


def _split_options(options: dict[str, Any], dtype: str, **forced: Any) -> SplitOptions:
    chosen = {"quantize": QUANTIZE[dtype], **{k: v for k, v in options.items() if k in SPLIT_OPTION_KEYS}}
    return SplitOptions.from_dict({**chosen, **forced})


def _foreground_options(options: dict[str, Any]) -> Any:
    """The job's stage-2 options (its "band" is the split's trimap, not the foreground's)."""
    from .stages.foreground import ForegroundOptions

    return ForegroundOptions.from_dict({k: v for k, v in options.items() if k in FOREGROUND_KEYS})


def require_finite(image: np.ndarray) -> None:
    """Models see the whole picture as it is: NaN or infinity is refused before they do."""
    if not np.all(np.isfinite(image)):
        raise InputError("image contains NaN or infinite values")


def _check_options(options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = set(options) - set(allowed)
    if unknown:
        raise InputError(f"unknown option(s): {', '.join(sorted(unknown))}", f"known: {', '.join(sorted(allowed))}")


def _number(options: dict[str, Any], key: str, default: float, lo: float, hi: float, kind: type) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)) \
            or not lo <= value <= hi:
        raise InputError(f"option {key} must be {'an integer' if kind is int else 'a number'} in {lo:g}..{hi:g}, "
                         f"got {value!r}")
    return value


FOREGROUND_KEYS = ("box_threshold", "text_threshold", "policy", "transparent_query", "transparent_threshold", "trimap")


def plain(value: Any) -> Any:
    """Info for the wire: numpy scalars and arrays become Python numbers and lists (msgpack takes those)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _layers(result: Any, dtype: str, order: str, info: dict[str, Any], behind: list | None = None,
            span: Span | None = None) -> JobOutput:
    """The front split's foreground and alpha, further foregrounds, and the last split's background (each float
    layer let go once converted: on a 4096^2 canvas they are 268 MB each), their colours mapped back onto `span`."""
    behind = behind or []
    last = behind[-1] if behind else result
    foreground = from_array(result.foreground, dtype, order, span)
    result.foreground = None
    background = from_array(last.background, dtype, order, span)
    last.background = None
    out = JobOutput(foreground, background, from_array(result.alpha, dtype, "L"), plain(_in_span(info, span)))
    out.behind = [from_array(r.foreground, dtype, order, span) for r in behind]
    return out


def _in_span(info: dict[str, Any], span: Span | None) -> dict[str, Any]:
    """The recomposition errors, worked out on the colours mapped onto [0, 1], in the layer's own values (x 255)."""
    if span is None:
        return info
    width = span[1] - span[0]
    scaled = {k: (v * width if isinstance(v, (float, np.floating)) else
                  [e * width if isinstance(e, (float, np.floating)) else e for e in v])
              for k, v in info.items() if k in ("recomposition_error", "recomposition_errors")}
    return {**info, **scaled, "colour_span": list(span)}


def _as_shown(image: np.ndarray, span: Span | None) -> np.ndarray:
    """A layer mapped onto [0, 1] (to_unit_array) as the models should see it: its colours back, clipped as a
    screen shows them (mapped, a highlight at 3 would darken the whole picture to a third); itself where unmapped."""
    if span is None:
        return image
    shown = unmap_colours(image.copy(), span)
    return np.clip(shown, 0.0, 1.0, out=shown)


def _layering_options(options: dict[str, Any]) -> tuple[str, int, Any]:
    """(layering, layering_steps, layering_size), checked."""
    choice = options.get("layering", "auto")
    if choice not in LAYERING_CHOICES:
        raise InputError(f"layering must be one of {LAYERING_CHOICES}, got {choice!r}")
    steps = int(_number(options, "layering_steps", LAYERING_STEPS, 1, 200, int))
    size = options.get("layering_size")  # FBDD's working size; default: the size it was trained at
    if size is not None and (int(_number(options, "layering_size", 512, 64, 4096, int)) % 8):
        raise InputError(f"option layering_size must be a multiple of 8, got {size}")
    return choice, steps, size


def layering_method(models: ModelManager, options: dict[str, Any], prompt: str, seed: int) -> LayerMethod | None:
    """Stage 3 as chosen by options["layering"]: "auto" takes FBDD + HFA when their weights are there,
    else zero-shot SD2 inpainting when that model is there, else the classical offline method. On a
    machine without a GPU "auto" stays classical (seconds, not minutes); name a path to force it."""
    choice, steps, size = _layering_options(options)
    if choice == "auto" and not (models.available("layering") or models.available("sd2-inpaint")):
        return None  # the classical default, without importing torch to look for a GPU (seconds, ~300 MB)
    if choice == "auto" and not models.accelerated():
        return None
    if choice == "fbdd" or (choice == "auto" and models.available("layering")):
        from .stages.layering import fbdd_method

        fbdd, hfa = models.layering()
        return fbdd_method(fbdd, hfa, steps, seed, size)
    if choice == "zero-shot" or (choice == "auto" and models.available("sd2-inpaint")):
        from .stages.zero_shot import zero_shot_method

        return zero_shot_method(models.sd2_inpaint(), prompt, seed, steps)
    return None


def layer_method(models: ModelManager, options: dict[str, Any], prompt: str = "", seed: int = 0) -> LayerMethod | None:
    """The layer method a split's options ask for, for the server's jobs and the CLI alike: stage 3 as
    options["layering"] chooses (layering_method), else the classical method with a model's fill (model_fill_method),
    else None: split_layer's classical method with the options' fill. Models are loaded now, so a missing one is
    reported before any work."""
    return layering_method(models, options, prompt, seed) or model_fill_method(models, options)


def matte_method(models: ModelManager, options: dict[str, Any]) -> MatteFn | None:
    """The learned matting a split's options ask for (options["matting"]): ViTMatte when named ("vitmatte"; a
    missing model reported now, before any work), or with "auto" (the default) when its weights are there and a
    GPU runs it; None: the closed form (and with alpha_mode "mask", which mats nothing)."""
    choice = options.get("matting", "auto")
    if options.get("alpha_mode") == "mask" or choice == "closed-form":
        return None
    if choice == "auto" and not (models.available("vitmatte") and models.accelerated()):
        return None  # the closed form, without importing torch to look for a GPU when the weights are not there
    from .stages.learned_matte import vitmatte_matte

    models.require(["vitmatte"])
    return vitmatte_matte(*models.vitmatte())


def model_fill_method(models: ModelManager, options: dict[str, Any]) -> LayerMethod | None:
    """The classical method with the LaMa fill when options["fill"] is "lama" (its model loaded now, so a missing
    one is reported before any work); None for the fills that need no model."""
    if options.get("fill") != "lama":
        return None
    from .imaging.lama import lama_fill
    from .stages.classical import classical_method

    return classical_method("lama", lama_fill(models.lama()))


def check_request(msg: Any) -> None:
    """Everything a job request can be refused for without its pixels or a model: its options and their values,
    its hints, its sizes. The server runs it before `accepted` (PROTOCOL.md); the job runs it again."""
    if isinstance(msg, (Split, Peel)):
        _check_split_request(msg)
    elif isinstance(msg, SplitLayers):
        _check_split_layers(msg)
    elif isinstance(msg, Generate):
        _generate_request(msg)


def _check_split_request(msg: Split | Peel) -> None:
    _check_options(msg.options, SPLIT_OPTION_KEYS + FOREGROUND_KEYS + LAYERING_KEYS)
    _layering_options(msg.options)
    _split_options(msg.options, msg.image.dtype)
    _foreground_options(msg.options)  # checked with a mask or a box too: a typo is not silently ignored
    if msg.image.order not in ("RGB", "BGR", "RGBA", "BGRA"):
        raise InputError(f"the layer to split must be RGB(A) or BGR(A), got {msg.image.order}")
    if msg.mask is not None and msg.box is not None:
        raise InputError("give a mask or a box, not both")
    if msg.box is not None and len(msg.box) != 4:
        raise InputError(f"box must be [x0, y0, x1, y1], got {msg.box}")
    if msg.mask is not None and (msg.mask.width, msg.mask.height) != (msg.image.width, msg.image.height):
        raise InputError(f"mask is {msg.mask.width}x{msg.mask.height}, layer is {msg.image.width}x{msg.image.height}")
    if msg.mask is None and msg.box is None and not (msg.phrase or "").strip():  # spaces name nothing to find
        raise InputError("no foreground hint: give a mask (selection), a box or a phrase" +
                         (" (the phrase is only spaces)" if msg.phrase else ""))


def _split(msg: Split | Peel, progress: ProgressFn, models: ModelManager) -> JobOutput:
    _check_split_request(msg)
    method = layer_method(models, msg.options)
    matte = matte_method(models, msg.options) if msg.mask is not None or msg.box is not None else None
    image, span = to_unit_array(msg.image)
    dtype = msg.image.dtype
    order = "BGRA" if msg.image.order.startswith("BGR") else "RGBA"
    info: dict[str, Any] = {}
    if msg.mask is not None:
        result = split_layer(image, mask=to_mask(msg.mask), options=_split_options(msg.options, dtype),
                             progress=progress, method=method, overwrite_input=True, matte=matte)
    elif msg.box is not None:
        result = split_layer(image, box=tuple(msg.box), options=_split_options(msg.options, dtype),  # type: ignore
                             progress=progress, method=method, overwrite_input=True, matte=matte)
    elif msg.phrase:
        from .stages.foreground import determine_foreground

        require_finite(image)
        models.require(STAGE2_MODELS)
        alpha, info["foreground"] = determine_foreground(models, _as_shown(image, span), msg.phrase,
                                                        _foreground_options(msg.options),
                                                        sub_progress(progress, 0.0, 0.5))
        result = split_layer(image, mask=alpha, options=_split_options(msg.options, dtype, alpha_mode="mask"),
                             progress=sub_progress(progress, 0.5, 1.0), method=method, overwrite_input=True)
    info.update(result.info)
    if isinstance(msg, Peel):
        info["index"] = msg.index
    return _layers(result, dtype, order, info, span=span)


def _check_split_layers(msg: SplitLayers) -> None:
    _check_options(msg.options, SPLIT_OPTION_KEYS + LAYERING_KEYS + (FOREGROUND_KEYS if msg.phrases else ()))
    _layering_options(msg.options)
    _split_options(msg.options, msg.image.dtype)
    if msg.phrases:
        _foreground_options(msg.options)
    if msg.image.order not in ("RGB", "BGR", "RGBA", "BGRA"):
        raise InputError(f"the layer to split must be RGB(A) or BGR(A), got {msg.image.order}")


def _split_layers(msg: SplitLayers, progress: ProgressFn, models: ModelManager) -> JobOutput:
    """Every labelled object peeled front to back (stages/peel.py): the frontmost is the result's foreground, the
    others its `behind`, and the background the one behind them all."""
    from .stages.order import best_order, occlusion_verdicts
    from .stages.peel import LabelMasks, check_background, colour_labels, colour_order, label_values, split_objects

    _check_split_layers(msg)
    if msg.phrases:
        models.require(STAGE2_MODELS)
    if msg.auto:
        models.require(AUTO_MODELS)
    method = layer_method(models, msg.options)
    matte = None if msg.phrases else matte_method(models, msg.options)  # a phrase's alpha is ViTMatte's already
    info: dict[str, Any] = {}
    image, span = to_unit_array(msg.image)
    dtype = msg.image.dtype
    order = "BGRA" if msg.image.order.startswith("BGR") else "RGBA"
    options = _split_options(msg.options, dtype)
    masks: Sequence[np.ndarray]
    if msg.auto:  # every object the models find, front to back by depth and occlusion
        from .stages.auto import find_objects

        require_finite(image)
        labels, objects, info["auto"] = find_objects(models, _as_shown(image, span),
                                                     progress=sub_progress(progress, 0.0, AUTO_SHARE))
        masks = LabelMasks(labels, objects)
        progress = sub_progress(progress, AUTO_SHARE, 1.0)
    elif msg.phrases:  # each object found on the whole picture (the layer as it came, kept intact by the peel)
        require_finite(image)
        objects = list(range(1, len(msg.phrases) + 1))
        masks = PhraseMasks(models, _as_shown(image, span), msg.phrases, _foreground_options(msg.options), info,
                            progress)
        options = _split_options(msg.options, dtype, alpha_mode="mask")
    else:
        assert msg.labels is not None
        labels = np.frombuffer(msg.labels.data, np.uint8).reshape(msg.labels.height, msg.labels.width,
                                                                  msg.labels.channels)
        if msg.labels.order == "L":
            labels = labels[..., 0]
            # the docker's selection masks, each thresholded at half: no blends to look for
            check_background(labels, "every pixel is in an object's mask", "leave part of the layer outside them")
            names = None
        else:  # a label layer in flat colours
            rgb = labels[..., [2, 1, 0, 3][:msg.labels.channels]] if msg.labels.order.startswith("BGR") else labels
            labels, info["colours"] = colour_labels(rgb)
            if not info["colours"]:
                raise InputError("the label layer has no flat colour that covers an object's area (a patch of one "
                                 "colour at least 5 pixels across)", "paint each object in one flat colour")
            check_background(labels, "the label layer is painted all over", "leave the background unpainted")
            names = [f"the object painted {colour}" for colour in info["colours"]]
        objects = label_values(labels)
        if msg.order == "auto":
            verdicts = occlusion_verdicts(labels, objects)
            objects = best_order(labels, objects, verdicts)
            # those no boundary orders (touching no other object): behind the rest, the smaller first
            info["unordered"] = [k for k in objects if not any(k in pair for pair in verdicts)]
        if msg.colours:  # the artist's order for these colours, the automatic one for the rest
            objects = colour_order(objects, info["colours"], msg.colours)
        masks = LabelMasks(labels, objects, [names[k - 1] for k in objects] if names else None)
    peeled = split_objects(image, masks, options, progress, method, matte)
    assert peeled.background is not None
    error = peeled.error(image)  # the whole stack against the layer it came from (split_objects left it intact)
    del image
    first = peeled.layers[0]
    alpha = first[..., 3].astype(np.float32) / 255.0 if first.dtype == np.uint8 else first[..., 3]
    used = "depth and occlusion" if msg.auto else "colours" if msg.colours else msg.order
    info.update({**peeled.infos[-1], "objects": objects, "order": used, "recomposition_error": error,
                 "recomposition_errors": [i.get("recomposition_error") for i in peeled.infos],
                 # objects whose layer shows nowhere (labelled only where the layer is transparent): the docker says so
                 "empty": [k for k, layer in zip(objects, peeled.layers, strict=True) if not layer[..., 3].any()]})
    out = JobOutput(from_array(first, dtype, order, span), from_array(peeled.background, dtype, order, span),
                    from_array(alpha, dtype, "L"), plain(_in_span(info, span)))
    peeled.background = None
    out.behind = [from_array(layer, dtype, order, span) for layer in peeled.layers[1:]]
    return out


class PhraseMasks(Sequence[np.ndarray]):
    """Each phrase's alpha (stage 2: Grounding DINO, SAM, ViTMatte on the whole picture), found when its object's
    turn comes; what stage 2 reports of each goes to info["foregrounds"]."""

    def __init__(self, models: ModelManager, image: np.ndarray, phrases: list[str], options: Any,
                 info: dict[str, Any], progress: ProgressFn) -> None:
        self.models, self.image, self.phrases, self.options = models, image, phrases, options
        self.found = info.setdefault("foregrounds", [])
        self.progress = progress

    def __len__(self) -> int:
        return len(self.phrases)

    @property
    def names(self) -> list[str]:
        """What the peel calls each object in its progress and errors ("a vase: matting")."""
        return self.phrases

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]  # no slices needed
        from .stages.foreground import determine_foreground

        at = i / len(self.phrases)  # where this object's split starts: its stage-2 steps are shown there
        alpha, found = determine_foreground(self.models, self.image, self.phrases[i], self.options,
                                            lambda stage, _: self.progress(stage, at))
        self.found.append(found)
        return alpha


GENERATE_KEYS = ("control", "control_scale", "dtype", "order") + SPLIT_OPTION_KEYS + FOREGROUND_KEYS + LAYERING_KEYS


def _generate_request(msg: Generate) -> tuple[Any, list[str], str, str, Any]:
    """The request checked: (GenerateParams, the phrases, output dtype, order, control)."""
    from .stages.generate import GenerateParams

    _check_options(msg.options, GENERATE_KEYS)
    _layering_options(msg.options)
    _split_options(msg.options, "u8")
    _foreground_options(msg.options)
    try:
        prompt, phrases = parse_prompt(msg.prompt)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    phrases = [msg.phrase] if msg.phrase else phrases
    if not phrases:
        raise InputError("name the foreground: put it in brackets in the prompt, e.g. [a red fox] in the snow")
    dtype = msg.options.get("dtype", "u8")
    order = msg.options.get("order", "RGBA")
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES or order not in ("RGBA", "BGRA"):
        raise InputError(f"output dtype/order {dtype!r}/{order!r} not supported (u8/u16/f16/f32, RGBA/BGRA)")
    control = msg.options.get("control")
    params = GenerateParams(prompt, msg.width, msg.height, msg.steps, msg.guidance, msg.seed, msg.negative_prompt,
                            control, msg.control_image, _number(msg.options, "control_scale", 0.5, 0.0, 2.0, float))
    params.check()  # before loading gigabytes of weights (the control image's pixels are converted by the job)
    return params, phrases, dtype, order, control


def _generate(msg: Generate, progress: ProgressFn, models: ModelManager) -> JobOutput:
    from .stages.foreground import determine_foreground
    from .stages.generate import generate_composite

    params, phrases, dtype, order, control = _generate_request(msg)
    if msg.control_image is not None:
        params.control_image = to_array(msg.control_image)
    models.require(["sdxl", *([f"controlnet-{control}"] if control else []), *STAGE2_MODELS])
    pipe = models.sdxl(control)
    composite = generate_composite(pipe, params, sub_progress(progress, 0.0, GENERATE_SHARE))
    # the background prompt for zero-shot inpainting: the scene without its foreground phrases
    method = layer_method(models, msg.options, background_prompt(msg.prompt), msg.seed)
    fg_options = _foreground_options(msg.options)
    # peel front to back: each phrase is split off the background left by the previous one
    stack, fg_infos, current = [], [], composite
    share = (1.0 - GENERATE_SHARE) / len(phrases)
    for i, phrase in enumerate(phrases):
        start = GENERATE_SHARE + i * share
        alpha, fg_info = determine_foreground(models, current, phrase, fg_options,
                                              sub_progress(progress, start, start + share * 0.4))
        result = split_layer(current, mask=alpha, options=_split_options(msg.options, dtype, alpha_mode="mask"),
                             progress=sub_progress(progress, start + share * 0.4, start + share), method=method)
        stack.append(result)
        fg_infos.append(fg_info)
        current = result.background[..., :3]
    info = {**stack[0].info, "foreground": fg_infos[0], "foregrounds": fg_infos, "prompt": params.prompt,
            "phrase": phrases[0], "phrases": phrases, "seed": msg.seed,
            "stack_error": stack_error(composite, stack)}
    if control:
        info.update(control=control, control_scale=params.control_scale)
    return _layers(stack[0], dtype, order, info, stack[1:])


def stack_error(composite: np.ndarray, stack: list) -> float:
    """Max |recomposited stack - composite| over the image: every foreground over the last background."""
    out = composite_stack([result.foreground for result in stack], stack[-1].background[..., :3])
    return float(np.abs(out - composite).max())


def run_job(message: Any, progress: ProgressFn, models: ModelManager) -> JobOutput:
    """Run one job request; raises InputError / NotAvailable (incl. ModelMissing) / JobCancelled on purpose.
    Loading a model for the first time is reported as a stage ("loading sdxl") at the job's current fraction."""
    if not isinstance(message, (Split, Peel, SplitLayers, Generate)):
        raise InputError(f"'{type(message).TYPE}' is not a job")
    last = [0.0]

    def tracked(stage: str, fraction: float) -> None:
        last[0] = fraction
        progress(stage, fraction)

    models.on_load = lambda name: progress(f"loading {name}", last[0])
    try:
        if isinstance(message, Generate):
            return _generate(message, tracked, models)
        if isinstance(message, SplitLayers):
            return _split_layers(message, tracked, models)
        return _split(message, tracked, models)
    finally:
        models.on_load = None

