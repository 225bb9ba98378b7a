"""FBDD fine-tuning (paper, Sec. 3.4): both UNets from SD2 inpainting (or an FBDD folder), v-prediction
loss against scheduler.get_velocity, frozen VAE, null prompt. Runs on one or many GPUs/nodes through
`accelerate` (launch with `accelerate launch -m layeringdiff train fbdd ...`); mixed precision, gradient
checkpointing, optional EMA, checkpoint/resume, export to the folder the backend loads."""

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..stages.layering import FBDD, fbdd_input, fbdd_scheduler
from . import checkpoints


@dataclass
class FBDDTrainConfig:
    init: str  # SD2-inpainting folder, or an FBDD folder (unet_fg/, unet_bg/, vae/, ...)
    out: str
    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-5
    mixed_precision: str = "no"  # no | fp16 | bf16
    gradient_checkpointing: bool = False
    ema_decay: float = 0.0  # 0 turns EMA off
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0


def _batch_tensors(batch: dict[str, Any], device: Any) -> dict[str, torch.Tensor]:
    """A loader batch -> float32 NCHW tensors on `device`. Batches of 8-bit samples (what the loader moves: a
    quarter of the bytes) are converted there, and the composite is made there, C = a F + (1 - a) B."""
    out = {}
    for key, value in batch.items():
        t = torch.as_tensor(value).to(device, non_blocking=True)
        t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
        out[key] = t.permute(0, 3, 1, 2) if t.ndim == 4 else t[:, None]
    if "composite" not in out:
        a = out["alpha"]
        out["composite"] = a * out["foreground"] + (1.0 - a) * out["background"]
    return out


def load_fbdd(init: str) -> FBDD:
    folder = Path(init)
    if (folder / "unet_fg").is_dir():
        return FBDD.from_folder(folder)
    from diffusers import StableDiffusionInpaintPipeline

    return FBDD.from_inpainting(StableDiffusionInpaintPipeline.from_pretrained(init, local_files_only=True))


def fbdd_loss(fbdd: FBDD, unet_fg: Any, unet_bg: Any, noise_scheduler: Any, batch: dict[str, torch.Tensor],
              generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """v-prediction MSE of both UNets on one batch: the targets are the VAE latents of F and B."""
    with torch.no_grad():
        c_lat = fbdd.encode(batch["composite"])
        targets = (fbdd.encode(batch["foreground"]), fbdd.encode(batch["background"]))
    n = c_lat.shape[0]
    cond = fbdd.null_embedding.to(c_lat.device, c_lat.dtype).expand(n, -1, -1)
    total, parts = 0.0, {}
    for name, unet, x0 in (("fg", unet_fg, targets[0]), ("bg", unet_bg, targets[1])):
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (n,), generator=generator).to(x0.device)
        noisy = noise_scheduler.add_noise(x0, noise, t)
        target = noise_scheduler.get_velocity(x0, noise, t)
        pred = unet(fbdd_input(noisy, c_lat, batch["alpha"]), t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred.float(), target.float())
        parts[f"loss_{name}"] = loss.detach()
        total = total + loss
    return total, parts


def train_fbdd(config: FBDDTrainConfig, dataset: Any,
               progress: Callable[[int, dict], None] | None = None) -> Path | None:
    """Train, checkpointing to out/checkpoints/step-N; resumes from the latest checkpoint; exports to
    out/export/fbdd. Returns the export folder (None on the other processes of a multi-process run)."""
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler

    out = Path(config.out)
    accelerator = checkpoints.make_accelerator(config.mixed_precision, out)
    set_seed(config.seed)
    fbdd = load_fbdd(config.init)
    fbdd.vae.requires_grad_(False)
    noise_scheduler = fbdd_scheduler(fbdd.scheduler.config, DDPMScheduler)
    unet_fg, unet_bg, optimizer, loader, ema = prepare_training(accelerator, fbdd, config, dataset)
    step = checkpoints.resume(accelerator, out, ema)
    log = checkpoints.open_log(accelerator, out, ["loss", "loss_fg", "loss_bg"], asdict(config))
    generator = checkpoints.process_generator(config.seed, accelerator, step)
    while step < config.steps:
        for batch in loader:
            if step >= config.steps:
                break
            with accelerator.accumulate(unet_fg, unet_bg):
                loss, parts = fbdd_loss(fbdd, unet_fg, unet_bg, noise_scheduler,
                                        _batch_tensors(batch, accelerator.device), generator)
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            if ema is not None:
                _ema_update(ema, (accelerator.unwrap_model(unet_fg), accelerator.unwrap_model(unet_bg)),
                            config.ema_decay)
            step += 1
            checkpoints.after_step(accelerator, out, step, config.steps, {"loss": loss, **parts},
                                   log, config.log_every, config.checkpoint_every, progress, ema)
    checkpoints.check_in_sync(accelerator, unet_fg, unet_bg)
    export = None
    if log is not None:  # only the main process exports
        log.plot()
        export = out / "export" / "fbdd"
        fg, bg = ema if ema is not None else (accelerator.unwrap_model(unet_fg), accelerator.unwrap_model(unet_bg))
        side = int(dataset[0]["alpha"].shape[0])  # the working size the backend runs it at
        FBDD(fg, bg, fbdd.vae, fbdd.scheduler, fbdd.null_embedding, size=side).save(export)
    checkpoints.finish(accelerator)
    return export


def prepare_training(accelerator: Any, fbdd: FBDD, config: FBDDTrainConfig,
                     dataset: Any) -> tuple[Any, Any, Any, Any, list | None]:
    """UNets, optimizer and loader through `accelerator.prepare` (which moves the UNets to its device), then the
    EMA copies, made from the prepared UNets so that they live on the same device (an EMA made before would stay
    on the CPU while the UNets train on the GPU)."""
    unet_fg, unet_bg = fbdd.unet_fg.train(), fbdd.unet_bg.train()
    if config.gradient_checkpointing:
        unet_fg.enable_gradient_checkpointing()
        unet_bg.enable_gradient_checkpointing()
    params = list(unet_fg.parameters()) + list(unet_bg.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    loader = data_loader(dataset, config.batch_size, config.seed, config.num_workers,
                         pin_memory=accelerator.device.type == "cuda")
    unet_fg, unet_bg, optimizer, loader = accelerator.prepare(unet_fg, unet_bg, optimizer, loader)
    fbdd.vae.to(accelerator.device)
    ema = None
    if config.ema_decay:
        ema = [copy.deepcopy(accelerator.unwrap_model(u)).eval().requires_grad_(False) for u in (unet_fg, unet_bg)]
    return unet_fg, unet_bg, optimizer, loader, ema


def data_loader(dataset: Any, batch_size: int, seed: int, num_workers: int = 0, pin_memory: bool = False) -> Any:
    """Shuffled batches; `num_workers` processes read and decode samples while the model trains."""
    return torch.utils.data.DataLoader(
        _TorchView(dataset), batch_size=batch_size, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(seed), num_workers=num_workers, pin_memory=pin_memory,
        persistent_workers=num_workers > 0)


class _TorchView(torch.utils.data.Dataset):
    """The loader's view of a dataset: its 8-bit samples when it has them (sample_u8), else its float ones."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.get = getattr(dataset, "sample_u8", dataset.__getitem__)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return self.get(i)


def _ema_update(ema: list, models: tuple, decay: float) -> None:
    with torch.no_grad():
        for e, m in zip(ema, models, strict=True):
            for pe, pm in zip(e.parameters(), m.parameters(), strict=True):
                pe.lerp_(pm.detach().to(pe.dtype), 1 - decay)
