"""Several objects in one operation: peeled front to back, each split off the background the objects in front of it
left (its alpha matted on the image without them), so every layer recomposites exactly and the background is
completed behind all of them.

A back object's part hidden by a front object is left transparent in its layer: what is there cannot be seen, and
the classical fill is a texture of the surroundings, right for a background, not for an object's hidden shape;
the front object's split completes that area in the background behind it instead.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..imaging.compose import composite_stack
from ..io.images import to_u8
from ..options import LayerMethod, SplitOptions
from ..progress import ProgressFn, no_progress, sub_progress
from .split import split_layer


class LabelMasks(Sequence[np.ndarray]):
    """Each object's mask (HxW float32, 1 on its label), made when its turn comes: N masks held at once would cost
    4 bytes a pixel each."""

    def __init__(self, labels: np.ndarray, objects: list[int]) -> None:
        self.labels, self.objects = labels, objects

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]  # no slices needed
        return (self.labels == self.objects[i]).astype(np.float32)


def label_values(labels: np.ndarray) -> list[int]:
    """The object labels present (1..255), front first."""
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256)[1:]) + 1
    return [int(k) for k in present]


@dataclass
class Peeled:
    """The objects' layers, front first (HxWx4 straight alpha each: uint8 when the split stores 8-bit layers,
    else float32), their split infos, and the background behind them all (float32)."""

    layers: list[np.ndarray] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    background: np.ndarray | None = None

    def composite(self) -> np.ndarray:
        """The layers over the background, back to front: what the stack shows (`image`, within 1/255)."""
        assert self.background is not None
        return composite_stack(self.layers, self.background)


def split_objects(image: np.ndarray, masks: Sequence[np.ndarray], options: SplitOptions | None = None,
                  progress: ProgressFn = no_progress, method: LayerMethod | None = None) -> Peeled:
    """Each mask's object (HxW masks, the first the frontmost) split off what the ones before it left. Only the
    last background is kept: each earlier one is the next split's input, whose buffer becomes its background. With
    8-bit layers (quantize 255) a finished layer is kept as uint8, exactly: a quarter of its float32 memory."""
    if not masks:
        raise InputError("no object to split: every label is 0")
    peeled = Peeled()
    eight_bit = options is not None and options.quantize == 255
    current = image
    for k, mask in enumerate(masks):
        part = sub_progress(progress, k / len(masks), (k + 1) / len(masks))
        try:
            result = split_layer(current, mask=mask, options=options, progress=part, method=method,
                                 overwrite_input=k > 0)  # our own buffer from the second object on
        except InputError as exc:
            raise InputError(f"object {k + 1}: {exc.text}", exc.detail) from None
        peeled.layers.append(to_u8(result.foreground) if eight_bit else result.foreground)
        peeled.infos.append(result.info)
        current = result.background
    peeled.background = current
    return peeled
