"""LaMa (Suvorov et al. 2022, big-lama, Apache-2.0) as an ONNX model run by onnxruntime on the CPU: the learned fill of
the hidden background (`--fill lama`).

The model sees the hidden region's box (plus context) resized to its fixed input size, and its output is resized
back and pasted into the hole; classical.blend_fill blends it in from alpha 0.5. The input/output contract is a
set of settings (LamaContract), read from `lama.json` in the model folder when there is one, so that another export
(other size, mask polarity, value ranges or tensor names) can be used without code.
"""

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..errors import NotAvailable

CONTRACT_FILE = "lama.json"
MIN_CONTEXT_PX = 16


@dataclass(frozen=True)
class LamaContract:
    """How to call the ONNX export. Defaults: the Carve/LaMa-ONNX export (lama_fp32.onnx)."""

    file: str = "lama_fp32.onnx"  # the .onnx file in the model folder
    size: int = 512  # square input side (pixels) the export was made for
    image_input: str = "image"  # N x 3 x size x size float32 RGB
    mask_input: str = "mask"  # N x 1 x size x size float32
    output: str = "output"  # N x 3 x size x size RGB
    hole_value: float = 1.0  # mask value that means "fill here" (the other pixels get 1 - hole_value)
    input_range: tuple[float, float] = (0.0, 1.0)  # RGB 0..1 of the image maps onto this
    output_range: tuple[float, float] = (0.0, 255.0)  # the output's black..white
    context: float = 0.25  # margin around the hole's box, as a fraction of its longer side

    @classmethod
    def load(cls, folder: str | Path) -> "LamaContract":
        """The folder's lama.json (any subset of the fields), else the defaults."""
        path = Path(folder) / CONTRACT_FILE
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise NotAvailable(f"cannot read {path}: {exc}") from None
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known if isinstance(data, dict) else {"(not an object)"}
        if unknown:
            raise NotAvailable(f"unknown setting(s) {sorted(unknown)} in {path}", f"known: {', '.join(sorted(known))}")
        for key, value in data.items():
            problem = _setting_problem(key, value)
            if problem:
                raise NotAvailable(f"bad setting {key!r} in {path}: {problem}, got {value!r}",
                                   f"fix it or remove it (the default is {getattr(cls(), key)!r})")
        return cls(**{k: tuple(float(x) for x in v) if k.endswith("_range") else v for k, v in data.items()})


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _setting_problem(key: str, value: object) -> str:
    """What is wrong with one lama.json setting, or "" when it is fine."""
    if key in ("file", "image_input", "mask_input", "output"):
        return "" if isinstance(value, str) and value else "it must be a non-empty text"
    if key == "size":
        ok = isinstance(value, int) and not isinstance(value, bool) and 8 <= value <= 4096
        return "" if ok else "it must be a whole number of pixels, 8 to 4096"
    if key == "hole_value":
        return "" if _number(value) and 0 <= value <= 1 else "it must be a number from 0 to 1"
    if key == "context":
        return "" if _number(value) and 0 <= value <= 4 else "it must be a number from 0 to 4"
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) for v in value) \
        and value[0] != value[1]
    return "" if ok else "it must be two different numbers, [black, white]"


class LamaModel:
    """An onnxruntime session for the export in `folder`, checked against its contract when it is loaded."""

    def __init__(self, folder: str | Path, contract: LamaContract | None = None) -> None:
        self.contract = contract or LamaContract.load(folder)
        path = Path(folder) / self.contract.file
        try:
            import onnxruntime
        except ImportError:
            raise NotAvailable("the lama fill needs onnxruntime", "pip install 'layeringdiff[lama]'") from None
        if not path.is_file():
            raise NotAvailable(f"no {self.contract.file} in {folder}",
                               f"fetch it with `layeringdiff models fetch lama`, or name the file in "
                               f"{Path(folder) / CONTRACT_FILE} (\"file\": \"...\")")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a truncated download, another format: the same message for the user
            raise NotAvailable(f"cannot load {path} with onnxruntime: {str(exc).strip().splitlines()[0]}") from None
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        c = self.contract
        if {c.image_input, c.mask_input} - inputs or c.output not in outputs:
            raise NotAvailable(
                f"{path} has inputs {sorted(inputs)} and outputs {sorted(outputs)}, the settings expect inputs "
                f"'{c.image_input}', '{c.mask_input}' and output '{c.output}'",
                f"set image_input, mask_input and output in {Path(folder) / CONTRACT_FILE}")

    def run(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """image size x size x 3 in [0,1], hole size x size bool -> the model's RGB in [0,1]."""
        c = self.contract
        lo, hi = c.input_range
        x = (lo + (hi - lo) * image.transpose(2, 0, 1)[None]).astype(np.float32)
        m = np.where(hole, c.hole_value, 1.0 - c.hole_value).astype(np.float32)[None, None]
        out = self.session.run([c.output], {c.image_input: x, c.mask_input: m})[0]
        out = np.asarray(out, np.float32).reshape(-1, *out.shape[-3:])[0]
        if out.shape[0] != 3:
            raise NotAvailable(f"the lama export's output has shape {out.shape}, expected 3 x {c.size} x {c.size}")
        olo, ohi = c.output_range
        return np.clip((out.transpose(1, 2, 0) - olo) / (ohi - olo), 0.0, 1.0)


def hole_box(hole: np.ndarray, context: float) -> tuple[slice, slice]:
    """The hole's bounding box grown by `context` of its longer side (at least MIN_CONTEXT_PX), clipped."""
    h, w = hole.shape
    ys, xs = np.nonzero(hole.any(axis=1))[0], np.nonzero(hole.any(axis=0))[0]
    margin = max(MIN_CONTEXT_PX, round(context * max(ys[-1] - ys[0] + 1, xs[-1] - xs[0] + 1)))
    return (slice(max(0, ys[0] - margin), min(h, ys[-1] + 1 + margin)),
            slice(max(0, xs[0] - margin), min(w, xs[-1] + 1 + margin)))


def square_box(box: tuple[slice, slice], h: int, w: int) -> tuple[slice, slice]:
    """The box grown to a square around its centre (the model's input is square: an oblong box would be squashed),
    kept inside the h x w image (so it stays oblong only when the image itself is narrower)."""
    ys, xs = box
    side = max(ys.stop - ys.start, xs.stop - xs.start)

    def grown(s: slice, limit: int) -> slice:
        length = min(side, limit)
        start = min(max(0, (s.start + s.stop - length) // 2), limit - length)
        return slice(start, start + length)

    return grown(ys, h), grown(xs, w)


def lama_fill(model: LamaModel) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A `fill` for classical.blend_fill: the hole's box with context at the model's size, the output brought
    back to the box's size and pasted into the hole."""

    def fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        out = np.array(image, np.float32)
        if not hole.any():
            return out
        size = model.contract.size
        box = square_box(hole_box(hole, model.contract.context), *hole.shape)
        crop, crop_hole = out[box], hole[box]
        bh, bw = crop_hole.shape
        side = max(bh, bw)  # a box at the image's edge can stay oblong: mirrored out to a square, not squashed
        square = cv2.copyMakeBorder(crop, 0, side - bh, 0, side - bw, cv2.BORDER_REFLECT_101)
        square_hole = np.pad(crop_hole, ((0, side - bh), (0, side - bw)))
        shrink = side > size
        small = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        small_hole = cv2.resize(square_hole.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0
        result = model.run(np.clip(small, 0.0, 1.0), small_hole)
        back = cv2.resize(result, (side, side), interpolation=cv2.INTER_CUBIC if shrink else cv2.INTER_AREA)
        crop[crop_hole] = np.clip(back[:bh, :bw], 0.0, 1.0)[crop_hole]
        return out

    return fill
