"""The split's options in one light module (no numpy, no image code): the fills, the alpha modes, the band, the
option keys with their ranges, SplitOptions that checks them, and LayerMethod. The CLI (whose --help must stay
fast), the server's request checks, the split and its layer methods all read them from here.

One name for the band everywhere: `band`, the half-width in pixels of the unknown band around the selection's
edge that matting decides (the docker's "Band" control, the protocol's `band` option, the CLI's --band, the
trimap's `band` argument).
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .errors import InputError
from .progress import ProgressFn

if TYPE_CHECKING:
    import numpy as np

ALPHA_MODES = ("matte", "mask")  # "matte": matting refines the hint; "mask": the mask is the alpha
# Which matting refines it: "closed-form" (Levin et al., imaging/matting.py: offline, seconds on a CPU), "vitmatte"
# (the learned ViTMatte of stage 2 on the same trimap, stages/learned_matte.py: its weights), "auto" (ViTMatte where
# its weights are there and a GPU runs it, else the closed form: on a CPU the closed form takes a fraction of the time)
MATTINGS = ("auto", "closed-form", "vitmatte")
# How the classical method fills the hidden background, the default first: "texture" (exemplar-based completion,
# imaging/patchmatch/), "smooth" (colour propagation), "lama" (the LaMa ONNX model, imaging/lama.py; its weights)
FILLS = ("texture", "smooth", "lama")
DEFAULT_FILL = FILLS[0]
BAND_RANGE = (1, 500)  # pixels; None: scaled to the object (trimap.band_radius)
QUANTIZE_RANGE = (1, 65535)  # alpha levels of the stored result (255 for 8-bit)
OPTION_KEYS = ("alpha_mode", "quantize", "band", "fill", "matting")
# the exact composition step after a layer method's guesses (imaging/compose.py)
LEAST_CHANGE = "least-change"
PROJECTION = "projection"
COMPOSITIONS = (LEAST_CHANGE, PROJECTION)

# (rgb, alpha, progress) -> (foreground guess, background guess), HxWx3 float32 each
LayersFn = Callable[["np.ndarray", "np.ndarray", ProgressFn], "tuple[np.ndarray, np.ndarray]"]
# (rgb, trimap, progress) -> alpha HxW float32: a learned matting instead of the closed form (split_layer's `matte`)
MatteFn = Callable[["np.ndarray", "np.ndarray", ProgressFn], "np.ndarray"]


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # bool is an int in Python, not in the protocol


@dataclass
class SplitOptions:
    """The split's options, checked however they are made (from a request, the CLI's flags or code)."""

    alpha_mode: str = "matte"
    quantize: int | None = None  # alpha levels of the stored result; un-mixing uses them
    band: int | None = None  # the unknown band's half-width in pixels; None scales it to the object
    fill: str = DEFAULT_FILL  # the classical method's fill of the hidden background
    matting: str = "auto"  # MATTINGS: resolved to a model (or none) where the models are, pipeline.matte_method

    def __post_init__(self) -> None:
        if self.alpha_mode not in ALPHA_MODES:
            raise InputError(f"alpha_mode must be one of {ALPHA_MODES}, got {self.alpha_mode!r}")
        lo, hi = QUANTIZE_RANGE
        if self.quantize is not None and not (_integer(self.quantize) and lo <= self.quantize <= hi):
            raise InputError(f"quantize must be an integer in {lo}..{hi}, got {self.quantize!r}")
        lo, hi = BAND_RANGE
        if self.band is not None and not (_integer(self.band) and lo <= self.band <= hi):
            raise InputError(f"band must be an integer in {lo}..{hi} pixels, got {self.band!r}")
        if self.fill not in FILLS:
            raise InputError(f"fill must be one of {FILLS}, got {self.fill!r}")
        if self.matting not in MATTINGS:
            raise InputError(f"matting must be one of {MATTINGS}, got {self.matting!r}")

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> "SplitOptions":
        unknown = set(options) - set(OPTION_KEYS)
        if unknown:
            raise InputError(f"unknown split option(s): {', '.join(sorted(unknown))}")
        return cls(**options)


@dataclass(frozen=True)
class LayerMethod:
    """How a split estimates its layers. `local`: the method only needs the object's box plus a margin
    (a small object on a big canvas costs what the object costs); generative methods see the whole image."""

    name: str
    layers: LayersFn
    local: bool = False
    # the exact composition step after the method's guesses: PROJECTION keeps the background guess where it can
    # and re-derives F; LEAST_CHANGE (this project's addition) corrects both layers, for methods whose foreground
    # guess carries information of its own (FBDD + HFA)
    composition: str = PROJECTION
    context: float = 0.0  # a local method's margin around the object, as a fraction of the object's box size
    fill: str | None = None  # the classical method's fill, reported in the split's info

    def __post_init__(self) -> None:
        if self.composition not in COMPOSITIONS:
            raise ValueError(f"composition must be one of {COMPOSITIONS}, got {self.composition!r}")
