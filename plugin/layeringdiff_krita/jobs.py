"""What a job of the docker is, shared by the controller and the Krita bridge (neither imports the other)."""

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional, Tuple


class UserError(Exception):
    """Something the user can fix; shown in the docker as it is."""


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
