"""Checkpoint, resume and per-step bookkeeping shared by the FBDD and HFA training loops."""

import json
from pathlib import Path
from typing import Any, Callable

import torch

from .logs import LossLog


def save(accelerator: Any, out: Path, step: int, ema: list | None = None) -> None:
    """out/checkpoints/step-N: accelerate's state (models, optimizer, RNG) + EMA weights + the step."""
    folder = out / "checkpoints" / f"step-{step:07d}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        if ema is not None:
            torch.save([e.state_dict() for e in ema], folder / "ema.pt")
        (folder / "step.json").write_text(json.dumps({"step": step}))


def resume(accelerator: Any, out: Path, ema: list | None = None) -> int:
    """Load the latest checkpoint if there is one; returns the step to continue from."""
    checkpoints = sorted((out / "checkpoints").glob("step-*")) if (out / "checkpoints").is_dir() else []
    if not checkpoints:
        return 0
    accelerator.load_state(str(checkpoints[-1]))
    if ema is not None and (checkpoints[-1] / "ema.pt").is_file():
        for e, state in zip(ema, torch.load(checkpoints[-1] / "ema.pt"), strict=True):
            e.load_state_dict(state)
    return json.loads((checkpoints[-1] / "step.json").read_text())["step"]


def after_step(accelerator: Any, out: Path, step: int, total: int, values: dict[str, float], log: LossLog,
               log_every: int, checkpoint_every: int, progress: Callable[[int, dict], None] | None,
               ema: list | None = None) -> None:
    if accelerator.is_main_process and (step % log_every == 0 or step == total):
        log.add(step, values)
    if progress:
        progress(step, values)
    if step % checkpoint_every == 0 or step == total:
        save(accelerator, out, step, ema)
