"""HFA training (paper, Sec. 3.4): FAN with MSE, BAN with Eq. 2 (MSE against the true B + 0.2 L_H against the
FBDD's decoded background), on composite + alpha + "F^ or B^ from the FBDD module": the layers a trained FBDD
decodes, made as a split makes them (layering.hfa_inputs: the object's crop, FBDD's working size, the same
resampling back). The classical estimate plus a fill instead is an explicit option (source "classical"), not the
paper's, and the export says so. Same rules as FBDD training: accelerate, checkpoint/resume, export to
out/export/hfa.

The decoded layers are made once, before training, and written 8-bit to out/decoded (PNG-coded pack files, about
1 MB a sample at 512 px, each process its share); training streams them from there, so memory stays flat in the
number of samples and an interrupted run resumes where decoding stopped."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..imaging.foreground import estimate_foreground
from ..stages.classical import complete_background
from ..stages.layering import FBDD, HFA, hfa_inputs
from . import checkpoints
from .dataset import to_u8
from .fbdd import _batch_tensors, data_loader
from .losses import ban_loss, fan_loss
from .store import PackReader, PackWriter

DECODED_FIELDS = ("decoded_fg", "decoded_bg")
SOURCES = {"fbdd": "FBDD's decoded layers, as a split makes them (the paper's)",
           "classical": "the classical estimate and fill (not the paper's: HFA then learns from other inputs than "
                        "FBDD gives it in use)"}


@dataclass
class HFATrainConfig:
    out: str
    fbdd: str | None = None  # FBDD folder whose decoded layers HFA learns to sharpen (source "fbdd")
    source: str = "fbdd"  # SOURCES: what HFA's input layers come from
    fbdd_steps: int = 25
    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-4
    base_channels: int = 32
    levels: int = 3
    mixed_precision: str = "no"
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0


def decoded_layers(sample: dict[str, np.ndarray], fbdd: FBDD | None, steps: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The layers HFA learns to refine: FBDD's decoded F^ and B^ as a split gives them to HFA (hfa_inputs), or,
    with no FBDD (source "classical"), the classical estimate and fill."""
    comp, alpha = sample["composite"], sample["alpha"]
    if fbdd is not None:
        return hfa_inputs(fbdd, comp, alpha, steps, seed)
    fg, bg = estimate_foreground(comp, alpha)
    return fg, complete_background(comp, alpha, fg, bg)


def check_source(config: HFATrainConfig) -> None:
    if config.source not in SOURCES:
        raise ValueError(f"HFA's source must be one of {', '.join(SOURCES)}, got {config.source!r}")
    if config.source == "fbdd" and not config.fbdd:
        raise ValueError("HFA learns to refine FBDD's output (paper, Sec. 3.4): give the trained FBDD folder "
                         "(--fbdd), or choose --source classical (not the paper's)")
    if config.source == "classical" and config.fbdd:
        raise ValueError("--source classical takes no --fbdd: its layers come from the classical estimate")


def decode_to_disk(dataset: Any, fbdd: FBDD | None, folder: str | Path, steps: int, seed: int, rank: int = 0,
                   world: int = 1, progress: Callable[[int, int], None] | None = None) -> None:
    """This process's share of the samples (i % world == rank) decoded once and written 8-bit to `folder`;
    samples already there are skipped."""
    folder = Path(folder)
    done = PackReader(folder, DECODED_FIELDS)
    todo = [i for i in range(rank, len(dataset), world) if i not in done]
    with PackWriter(folder, f"decoded-{rank}", DECODED_FIELDS) as writer:
        for n, i in enumerate(todo):
            fg, bg = decoded_layers(dataset[i], fbdd, steps, seed + i)
            writer.add(i, {"decoded_fg": to_u8(fg), "decoded_bg": to_u8(bg)})
            if progress:
                progress(n + 1, len(todo))


def weights_stamp(folder: str | Path) -> list:
    """Size and modification time of every file of an FBDD folder: an FBDD trained further into the same folder
    makes the layers decoded by the old one stale."""
    root = Path(folder)
    return [[str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns]
            for p in sorted(root.rglob("*")) if p.is_file()]


def check_decoded_folder(folder: Path, fingerprint: dict) -> None:
    """The decoded layers in `folder` must come from the same FBDD, steps, seed and data as this run."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "decoded.json"
    if path.is_file() and json.loads(path.read_text()) != fingerprint:
        raise ValueError(f"{folder} holds layers decoded for another run ({path.read_text().strip()}); "
                         "delete that folder or train into another one")
    path.write_text(json.dumps(fingerprint))


class DecodedLayers(torch.utils.data.Dataset):
    """Dataset samples plus the decoded layers HFA refines, read from disk (decode_to_disk wrote them)."""

    def __init__(self, dataset: Any, folder: str | Path) -> None:
        self.dataset = dataset
        self.reader = PackReader(folder, DECODED_FIELDS)
        missing = len(dataset) - len(self.reader)
        if missing:
            raise ValueError(f"{folder} lacks the decoded layers of {missing} samples")

    def __len__(self) -> int:
        return len(self.dataset)

    def sample_u8(self, i: int) -> dict[str, np.ndarray]:
        """8-bit F, B, alpha and decoded layers (when the dataset has 8-bit samples): what the loader moves."""
        sample = self.dataset.sample_u8(i) if hasattr(self.dataset, "sample_u8") else self.dataset[i]
        return {**sample, **self.reader[i]}

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        decoded = self.reader[i]
        return {**self.dataset[i], **{k: v.astype(np.float32) / 255.0 for k, v in decoded.items()}}


def hfa_losses(hfa_fan: Any, hfa_ban: Any,
               batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """FAN's and BAN's losses on a batch of NCHW float tensors (fbdd._batch_tensors makes them)."""
    c, a = batch["composite"], batch["alpha"]
    fan = fan_loss(hfa_fan(c, a, batch["decoded_fg"]), batch["foreground"])
    decoded_bg = batch["decoded_bg"]
    ban = ban_loss(hfa_ban(c, a, decoded_bg), batch["background"], decoded_bg)
    return fan + ban, {"loss_fan": fan.detach(), "loss_ban": ban.detach()}


def train_hfa(config: HFATrainConfig, dataset: Any, progress: Callable[[int, dict], None] | None = None,
              decode_progress: Callable[[int, int], None] | None = None) -> Path | None:
    from accelerate.utils import set_seed

    check_source(config)
    out = Path(config.out)
    accelerator = checkpoints.make_accelerator(config.mixed_precision, out)
    set_seed(config.seed)
    decoded = out / "decoded"
    if accelerator.is_main_process:
        check_decoded_folder(decoded, {"fbdd": str(Path(config.fbdd).resolve()) if config.fbdd else None,
                                       "fbdd_weights": weights_stamp(config.fbdd) if config.fbdd else None,
                                       "fbdd_steps": config.fbdd_steps, "seed": config.seed, "count": len(dataset),
                                       "sample": list(dataset[0]["alpha"].shape)})
    accelerator.wait_for_everyone()
    fbdd = FBDD.from_folder(config.fbdd, accelerator.device) if config.fbdd else None
    decode_to_disk(dataset, fbdd, decoded, config.fbdd_steps, config.seed, accelerator.process_index,
                   accelerator.num_processes, decode_progress if accelerator.is_main_process else None)
    del fbdd  # its memory goes back before training
    accelerator.wait_for_everyone()
    hfa = HFA.new(config.base_channels, config.levels)
    fan, ban = hfa.fan.train(), hfa.ban.train()
    optimizer = torch.optim.AdamW(list(fan.parameters()) + list(ban.parameters()), lr=config.lr)
    loader = data_loader(DecodedLayers(dataset, decoded), config.batch_size, config.seed, config.num_workers,
                         pin_memory=accelerator.device.type == "cuda")
    fan, ban, optimizer, loader = accelerator.prepare(fan, ban, optimizer, loader)
    step = checkpoints.resume(accelerator, out)
    log = checkpoints.open_log(accelerator, out, ["loss", "loss_fan", "loss_ban"], asdict(config))
    while step < config.steps:
        for batch in loader:
            if step >= config.steps:
                break
            loss, parts = hfa_losses(fan, ban, _batch_tensors(batch, accelerator.device))
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            checkpoints.after_step(accelerator, out, step, config.steps, {"loss": loss, **parts},
                                   log, config.log_every, config.checkpoint_every, progress)
    checkpoints.check_in_sync(accelerator, fan, ban)
    export = None
    if log is not None:  # only the main process exports
        log.plot()
        export = out / "export" / "hfa"
        training = {"source": config.source, "inputs": SOURCES[config.source], "paper": config.source == "fbdd",
                    "fbdd": str(Path(config.fbdd).resolve()) if config.fbdd else None, "fbdd_steps": config.fbdd_steps,
                    "steps": config.steps}
        HFA(accelerator.unwrap_model(fan).cpu(), accelerator.unwrap_model(ban).cpu(), training).save(export)
    checkpoints.finish(accelerator)
    return export
