"""What the FBDD and HFA training loops share: the accelerator, checkpoint/resume, per-step bookkeeping.

Several processes (`accelerate launch`, `torchrun`, several nodes) run the same loop; only the main process
writes logs, configs and exports, and logged losses are averaged over all processes."""

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import InputError
from .logs import LossLog


def _no_accelerator() -> bool:
    xpu = getattr(torch, "xpu", None)
    return not torch.cuda.is_available() and not (xpu is not None and xpu.is_available())


def _check_one_gpu_per_process(launched: int) -> None:
    """NCCL needs a GPU of its own for every process of a machine; with fewer it fails deep inside the first
    collective ("Duplicate GPU detected", seen on a one-GPU machine with --num_processes 2): say it plainly first."""
    here = int(os.environ.get("LOCAL_WORLD_SIZE", str(launched)))
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if launched > 1 and not use_cpu and torch.cuda.is_available() and here > torch.cuda.device_count():
        gpus = torch.cuda.device_count()
        raise InputError(f"{here} training processes on this machine but {gpus} GPU(s): each process needs a GPU "
                         f"of its own; launch with --num_processes {gpus} per machine (or add --cpu to train on "
                         f"the CPU)")


def make_accelerator(mixed_precision: str, out: Path) -> Any:
    """An Accelerator; a multi-process launch on a machine without GPUs runs as one gloo group on the CPU
    (accelerate only forms a CPU group when told `cpu=True`; otherwise every process would train alone and
    overwrite the others' checkpoints)."""
    from accelerate import Accelerator

    launched = int(os.environ.get("WORLD_SIZE", "1"))
    cpu = launched > 1 and _no_accelerator()
    _check_one_gpu_per_process(launched)
    accelerator = Accelerator(mixed_precision=mixed_precision, project_dir=str(out), cpu=cpu)
    if accelerator.num_processes != launched:
        raise RuntimeError(f"{launched} processes were launched but accelerate formed a group of "
                           f"{accelerator.num_processes}; launch with `accelerate launch` or `torchrun`")
    return accelerator


def process_generator(seed: int, accelerator: Any, step: int) -> torch.Generator:
    """Noise/timestep generator: different on each process (they see different samples, and identical noise
    would waste the extra batches), reproducible from (seed, process, step) so resumed runs are seeded too."""
    state = np.random.SeedSequence([seed, accelerator.process_index, step]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def open_log(accelerator: Any, out: Path, names: list[str], config: dict) -> LossLog | None:
    """The run's loss log and config.json, written by the main process only."""
    if not accelerator.is_main_process:
        return None
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return LossLog(out, names)


def save(accelerator: Any, out: Path, step: int, ema: list | None = None) -> None:
    """out/checkpoints/step-N: accelerate's state (models, optimizer, RNG of every process) + EMA + the step."""
    folder = out / "checkpoints" / f"step-{step:07d}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        if ema is not None:
            torch.save([e.state_dict() for e in ema], folder / "ema.pt")
        (folder / "step.json").write_text(json.dumps({"step": step}))
    accelerator.wait_for_everyone()  # nobody resumes from, or deletes, a half-written checkpoint


def finish(accelerator: Any) -> None:
    """Every process waits for the export, then the process group is torn down before the interpreter exits:
    a gloo group left to exit-time destructors can abort a process (SIGABRT, "terminate called without an
    active exception") after its work is done, failing the whole launch."""
    accelerator.wait_for_everyone()
    accelerator.end_training()


def resume(accelerator: Any, out: Path, ema: list | None = None) -> int:
    """Load the latest complete checkpoint if there is one; returns the step to continue from."""
    folder = out / "checkpoints"
    done = sorted(p for p in folder.glob("step-*") if (p / "step.json").is_file()) if folder.is_dir() else []
    if not done:
        return 0
    accelerator.load_state(str(done[-1]))
    if ema is not None and (done[-1] / "ema.pt").is_file():
        for e, state in zip(ema, torch.load(done[-1] / "ema.pt", map_location="cpu"), strict=True):
            e.load_state_dict(state)
    return json.loads((done[-1] / "step.json").read_text())["step"]


def check_in_sync(accelerator: Any, *models: Any) -> None:
    """Every process must end with the same weights (gradients are averaged each step); a mismatch means the
    processes did not train as one group, and exporting the main process's weights would hide it."""
    if accelerator.num_processes == 1:
        return
    with torch.no_grad():
        sums = torch.stack([sum(p.detach().double().sum() for p in accelerator.unwrap_model(m).parameters())
                            for m in models])
    gathered = accelerator.gather(sums[None])
    if not torch.allclose(gathered, gathered[:1].expand_as(gathered), rtol=1e-6, atol=0):
        raise RuntimeError(f"the {accelerator.num_processes} training processes ended with different weights "
                           f"(parameter sums {gathered.tolist()})")


def after_step(accelerator: Any, out: Path, step: int, total: int, values: dict[str, torch.Tensor],
               log: LossLog | None, log_every: int, checkpoint_every: int,
               progress: Callable[[int, dict], None] | None, ema: list | None = None) -> None:
    """Average the step's losses over all processes, log and report them on the main process, checkpoint."""
    stacked = accelerator.reduce(torch.stack([v.detach().float() for v in values.values()]), reduction="mean")
    averaged = dict(zip(values, stacked.tolist(), strict=True))
    if log is not None and (step % log_every == 0 or step == total):
        log.add(step, averaged)
    if progress and accelerator.is_main_process:
        progress(step, averaged)
    if step % checkpoint_every == 0 or step == total:
        save(accelerator, out, step, ema)
