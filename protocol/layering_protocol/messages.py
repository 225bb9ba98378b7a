"""Message types. Each is a dataclass; its `TYPE` is the wire name, its annotations the schema.

Fields typed `Image` (or Optional[Image]) travel as raw frames; everything else goes in the msgpack body.
A job request's envelope id is the job id: progress/result/error/cancelled carry it as `job`.
"""

import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .errors import ErrorCode, ProtocolError
from .images import Image
from .limits import short

# Ranges of request fields, checked when a request is decoded: a value out of range is refused before the
# backend accepts the job (its stages check the same for callers that do not come over the wire)
SIZE_MULTIPLE = 8  # generate: the VAE's downsampling factor
MAX_SIDE = 2048
MAX_STEPS = 200
MAX_GUIDANCE = 100.0
MAX_SEED = 2**64 - 1  # what torch's generators take; numpy's need it non-negative


@dataclass
class Hello:
    """Client introduces itself; the answer is Capabilities (or a version_mismatch error)."""

    TYPE = "hello"
    client: str
    protocol: int


@dataclass
class Capabilities:
    TYPE = "capabilities"
    server: str
    protocol: int
    jobs: List[str]
    max_pixels: int
    models: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Ping:
    TYPE = "ping"
    time: float = 0.0


@dataclass
class Pong:
    TYPE = "pong"
    time: float = 0.0
    busy: bool = False


@dataclass
class Split:
    """Split a layer into foreground + background.

    The hint is one of: `mask` (L image, soft or hard, e.g. a Krita selection), `box` [x0, y0, x1, y1]
    in pixels, or `phrase` (needs the model stack). `options` holds pipeline settings such as
    {"alpha_mode": "matte" | "mask", "quantize": 255}.
    """

    TYPE = "split"
    image: Image
    mask: Optional[Image] = None
    box: Optional[List[int]] = None
    phrase: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Peel:
    """Split a previous background again: same inputs as Split, `index` is the layer's depth."""

    TYPE = "peel"
    image: Image
    mask: Optional[Image] = None
    box: Optional[List[int]] = None
    phrase: Optional[str] = None
    index: int = 1
    options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class SplitLayers:
    """Several objects in one job, peeled front to back. `labels`, u8 of the image's size, marks them: an L image
    by value (0 no object, k = 1..255 object k), or an RGB(A) one in flat colours (a painted label layer: each
    colour an object, transparent none). `order` "labels": object 1 is the frontmost, then 2...; "auto": the backend
    orders them from where they touch (the only order flat colours have), and `colours` ("#rrggbb", front first)
    puts those first in the artist's order. The result's `foreground` is the
    frontmost object, `behind` the others front to back, `info["objects"]` their labels in that order (a colour
    label's value is its index in `info["colours"]`, "#rrggbb" each, plus one)."""

    TYPE = "split_layers"
    image: Image
    labels: Optional[Image] = None
    order: str = "labels"
    options: Dict[str, Any] = field(default_factory=dict)
    phrases: List[str] = field(default_factory=list)  # instead of labels: each object named, front first (models)
    auto: bool = False  # instead of labels or phrases: every object found by the models, ordered by depth
    # with labels in flat colours: "#rrggbb" colours front first, the artist's order (the others behind, in "auto")
    colours: List[str] = field(default_factory=list)


LAYER_ORDERS = ("labels", "auto")  # split_layers.order


@dataclass
class Generate:
    """Stage 1 + 2 + 3: `prompt` marks the foreground in brackets ("[a cat] on a sofa"), or `phrase` names it.
    `options` may hold {"control": "canny" | "depth", "control_scale": 0.5, "dtype": "u8", "order": "BGRA",
    "negative_prompt"...}; `control_image` is the ControlNet input."""

    TYPE = "generate"
    prompt: str
    width: int = 1024
    height: int = 1024
    steps: int = 30
    guidance: float = 5.0
    seed: int = 0
    negative_prompt: str = ""
    phrase: Optional[str] = None
    options: Dict[str, Any] = field(default_factory=dict)
    control_image: Optional[Image] = None


@dataclass
class Echo:
    """Diagnostics: the server sends the image straight back (transfer benchmark, connection test)."""

    TYPE = "echo"
    image: Image


@dataclass
class Cancel:
    TYPE = "cancel"
    job: str


@dataclass
class Status:
    TYPE = "status"


@dataclass
class StatusReply:
    TYPE = "status_reply"
    busy: bool
    job: Optional[str] = None
    stage: Optional[str] = None
    queued: int = 0


@dataclass
class Accepted:
    TYPE = "accepted"
    job: str
    position: int = 0


@dataclass
class Progress:
    """`fraction` is overall progress of the job in [0, 1]; `stage` a short name like "matting"."""

    TYPE = "progress"
    job: str
    stage: str
    fraction: float
    text: str = ""


@dataclass
class Result:
    """Foreground (RGBA, straight alpha) + background (RGBA) + alpha (L) for one split; `behind` holds
    further foreground layers between them, front to back (a prompt with several [phrases] peels them
    all). `info` says which path ran, timings and the recomposition error."""

    TYPE = "result"
    job: str
    foreground: Image
    background: Image
    alpha: Image
    info: Dict[str, Any] = field(default_factory=dict)
    behind: List[Image] = field(default_factory=list)


@dataclass
class EchoReply:
    TYPE = "echo_reply"
    image: Image


@dataclass
class Error:
    TYPE = "error"
    code: str
    text: str
    detail: str = ""
    job: Optional[str] = None


@dataclass
class Cancelled:
    TYPE = "cancelled"
    job: str


MESSAGE_TYPES = {
    cls.TYPE: cls
    for cls in (
        Hello, Capabilities, Ping, Pong, Split, Peel, SplitLayers, Generate, Echo, Cancel, Status,
        StatusReply, Accepted, Progress, Result, EchoReply, Error, Cancelled,
    )
}
JOB_TYPES = ("split", "peel", "split_layers", "generate")
REQUEST_TYPES = ("hello", "ping", "status", "echo", "cancel", *JOB_TYPES)  # what a client may send


def _out_of_range(message: Any) -> Optional[str]:
    """What is wrong with a request's numeric fields (or its mask's size), or None."""
    if isinstance(message, Peel) and message.index < 1:
        return f"'peel.index' must be at least 1, got {message.index}"
    if isinstance(message, (Split, Peel)) and message.mask is not None \
            and (message.mask.width, message.mask.height) != (message.image.width, message.image.height):
        return (f"'{message.TYPE}.mask' is {message.mask.width}x{message.mask.height}, '{message.TYPE}.image' is "
                f"{message.image.width}x{message.image.height}: sizes must match")
    if isinstance(message, SplitLayers):
        return _split_layers_problem(message)
    if not isinstance(message, Generate):
        return None
    for name in ("width", "height"):
        value = getattr(message, name)
        if not SIZE_MULTIPLE <= value <= MAX_SIDE or value % SIZE_MULTIPLE:
            return (f"'generate.{name}' must be a multiple of {SIZE_MULTIPLE} from {SIZE_MULTIPLE} to {MAX_SIDE}, "
                    f"got {value}")
    if not 1 <= message.steps <= MAX_STEPS:
        return f"'generate.steps' must be from 1 to {MAX_STEPS}, got {message.steps}"
    if not (math.isfinite(message.guidance) and 0 <= message.guidance <= MAX_GUIDANCE):
        return f"'generate.guidance' must be from 0 to {MAX_GUIDANCE:g}, got {message.guidance}"
    if not 0 <= message.seed <= MAX_SEED:
        return f"'generate.seed' must be from 0 to 2**64 - 1, got {message.seed}"
    return None


MAX_OBJECTS = 255  # split_layers: labels are one byte
COLOUR_CODE = re.compile(r"#[0-9a-fA-F]{6}")


def _split_layers_problem(message: "SplitLayers") -> Optional[str]:
    if (message.labels is not None) + bool(message.phrases) + bool(message.auto) != 1:
        return "'split_layers' needs one of 'labels', 'phrases' or 'auto'"
    if message.colours and message.labels is None:
        return "'split_layers.colours' orders the colours of 'split_layers.labels'; there are none"
    if message.auto:
        return None
    if message.phrases:
        if len(message.phrases) > MAX_OBJECTS:
            return f"'split_layers.phrases' names {len(message.phrases)} objects, at most {MAX_OBJECTS}"
        if not all(isinstance(p, str) and p.strip() for p in message.phrases):
            return "'split_layers.phrases' must be words, none empty"
        if message.order != "labels":
            return "'split_layers.phrases' are front first: 'split_layers.order' must be labels"
        return None
    assert message.labels is not None
    if (message.labels.width, message.labels.height) != (message.image.width, message.image.height):
        return (f"'split_layers.labels' is {message.labels.width}x{message.labels.height}, 'split_layers.image' is "
                f"{message.image.width}x{message.image.height}: sizes must match")
    if message.labels.dtype != "u8":
        return f"'split_layers.labels' must be a u8 image, got {message.labels.dtype}"
    if message.order not in LAYER_ORDERS:
        return f"'split_layers.order' must be one of {', '.join(LAYER_ORDERS)}, got {message.order!r}"
    if message.labels.order != "L" and message.order != "auto":
        return ("'split_layers.labels' in flat colours says nothing of which object is in front: "
                "'split_layers.order' must be auto")
    if message.colours:
        if message.labels.order == "L":
            return "'split_layers.colours' orders a label layer in flat colours; 'split_layers.labels' is L"
        bad = [c for c in message.colours if not (isinstance(c, str) and COLOUR_CODE.fullmatch(c))]
        if bad:
            return f"'split_layers.colours' are \"#rrggbb\" codes, got {short(str(bad[0]))}"
        if len({c.lower() for c in message.colours}) != len(message.colours):
            return "'split_layers.colours' names a colour twice"
        if len(message.colours) > MAX_OBJECTS:
            return f"'split_layers.colours' names {len(message.colours)} colours, at most {MAX_OBJECTS}"
    return None


def check_ranges(message: Any) -> None:
    """ProtocolError (bad_field) for a request field out of its range; the codec calls it on every decode."""
    problem = _out_of_range(message)
    if problem is not None:
        raise ProtocolError(ErrorCode.BAD_FIELD, problem)
