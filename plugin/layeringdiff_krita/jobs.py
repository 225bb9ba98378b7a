"""What a job of the docker is, shared by the controller and the Krita bridge (neither imports the other)."""

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, Optional, Tuple


class UserError(Exception):
    """Something the user can fix; shown in the docker as it is."""


class NoObjects(UserError):
    """A layer with neither selection masks nor a label layer: Split into layers may still take phrases."""


class JobState(str, Enum):
    SENT = "sent"  # sent, not yet accepted
    RUNNING = "running"
    CANCELLING = "cancelling"  # Cancel sent, waiting for the backend to confirm
    WAITING = "waiting"  # the result is here, held until its document is the active one


@dataclass
class LayerPixels:
    node: Any
    rect: Tuple[int, int, int, int]  # x, y, w, h in document pixels
    image: Any  # layering_protocol.Image
    name: str


@dataclass
class Objects:
    """The objects of a split into layers, as read from the document."""
    labels: Any  # layering_protocol.Image: L u8 label values (selection masks) or a label layer's flat colours;
    # None: phrases, one per object (the names)
    names: Dict[int, str]  # label value -> the object's name (masks, phrases); colours are named by the backend
    order: str  # "labels" (1 the frontmost) or "auto" (the backend orders them)
    source: str  # for messages: "3 selection masks", "the label layer 'labels'"
    colours: bool = False  # a label layer in flat colours: the backend names and orders them (or the artist's order)
    soft: bool = False  # selection masks with soft edges, which labels (one value a pixel) cut at half


@dataclass
class Job:
    id: str
    kind: str  # split | peel | generate
    doc: Any
    layer: Optional[LayerPixels] = None
    phrase: str = ""
    index: int = 1
    size: Tuple[int, int] = (0, 0)
    state: JobState = JobState.SENT
    stage: str = ""
    started: float = field(default_factory=time.monotonic)
    note: str = ""  # said before the result's own message
    result: Any = None  # a result waiting for its document
    objects: Optional[Objects] = None  # a split into layers: its objects
    drops: int = 0  # the connection's drops when it was sent (BackendClient.drops): one more, and it is lost
