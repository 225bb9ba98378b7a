"""HFA training (paper, Sec. 3.4): FAN with MSE, BAN with MSE + 0.2 L_H, on composite + alpha + the layer
decoded by a trained FBDD (or, without one, by the classical estimate), against the true F and B.
Same rules as FBDD training: accelerate, checkpoint/resume, export to out/export/hfa."""

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..imaging.foreground import estimate_foreground
from ..losses import ban_loss, fan_loss
from ..stages.classical import complete_background
from ..stages.layering import FBDD, HFA
from . import checkpoints


@dataclass
class HFATrainConfig:
    out: str
    fbdd: str | None = None  # FBDD folder whose decoded layers HFA learns to sharpen; None: classical estimate
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


class DecodedLayers(torch.utils.data.Dataset):
    """Dataset samples plus the decoded layers HFA refines, computed once per sample and kept."""

    def __init__(self, dataset: Any, fbdd: FBDD | None, steps: int, seed: int) -> None:
        self.dataset, self.fbdd, self.steps, self.seed = dataset, fbdd, steps, seed
        self.cache: dict[int, dict[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if i not in self.cache:
            s = self.dataset[i]
            comp, alpha = s["composite"], s["alpha"]
            if self.fbdd is not None:
                fg, bg = self.fbdd.decompose(comp, alpha, self.steps, self.seed + i)
            else:
                fg, bg = estimate_foreground(comp, alpha)
                bg = complete_background(comp, alpha, fg, bg)
            self.cache[i] = {**s, "decoded_fg": fg.astype(np.float32), "decoded_bg": bg.astype(np.float32)}
        return self.cache[i]


def _chw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2) if x.ndim == 4 else x[:, None]


def hfa_losses(hfa_fan: Any, hfa_ban: Any,
               batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    c, a = _chw(batch["composite"]), _chw(batch["alpha"])
    fan = fan_loss(hfa_fan(c, a, _chw(batch["decoded_fg"])), _chw(batch["foreground"]))
    decoded_bg = _chw(batch["decoded_bg"])
    ban = ban_loss(hfa_ban(c, a, decoded_bg), _chw(batch["background"]), decoded_bg)
    return fan + ban, {"loss_fan": fan.detach(), "loss_ban": ban.detach()}


def train_hfa(config: HFATrainConfig, dataset: Any, progress: Callable[[int, dict], None] | None = None) -> Path | None:
    from accelerate.utils import set_seed

    out = Path(config.out)
    accelerator = checkpoints.make_accelerator(config.mixed_precision, out)
    set_seed(config.seed)
    fbdd = FBDD.from_folder(config.fbdd, accelerator.device) if config.fbdd else None
    hfa = HFA.new(config.base_channels, config.levels)
    fan, ban = hfa.fan.train(), hfa.ban.train()
    optimizer = torch.optim.AdamW(list(fan.parameters()) + list(ban.parameters()), lr=config.lr)
    loader = torch.utils.data.DataLoader(DecodedLayers(dataset, fbdd, config.fbdd_steps, config.seed),
                                         batch_size=config.batch_size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(config.seed))
    fan, ban, optimizer, loader = accelerator.prepare(fan, ban, optimizer, loader)
    step = checkpoints.resume(accelerator, out)
    log = checkpoints.open_log(accelerator, out, ["loss", "loss_fan", "loss_ban"], asdict(config))
    while step < config.steps:
        for batch in loader:
            if step >= config.steps:
                break
            batch = {k: v.to(accelerator.device, torch.float32) for k, v in batch.items()}
            loss, parts = hfa_losses(fan, ban, batch)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            checkpoints.after_step(accelerator, out, step, config.steps, {"loss": loss, **parts},
                                   log, config.log_every, config.checkpoint_every, progress)
    checkpoints.check_in_sync(accelerator, fan, ban)
    if log is None:
        return None  # not the main process: it exports
    log.plot()
    export = out / "export" / "hfa"
    HFA(accelerator.unwrap_model(fan).cpu(), accelerator.unwrap_model(ban).cpu()).save(export)
    return export
