"""Stage 3 of LayeringDiff: FBDD (two diffusion UNets decompose the composite into foreground and
background latents) and HFA (two small UNets, FAN and BAN, restore high frequencies), then copy-through.

FBDD UNets have the Stable Diffusion 2 inpainting architecture with conv_in widened to 72 channels:
noisy latent (4) + VAE latent of the composite (4) + pixel_unshuffle(alpha, 8) (64). v-prediction,
null prompt. Weights come from this project's training (train/); none are public, so pipeline.py falls
back to a zero-shot path when they are absent.

At any canvas size FBDD runs on the object's crop at a working size near its training size (512 px); its layers
are brought back up, and HFA (in overlapping tiles when large), copy-through and the composition step restore the
full resolution from the composite.
"""

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..options import LEAST_CHANGE, LayerMethod
from ..progress import ProgressFn, no_progress

LATENT_CHANNELS = 4
VAE_FACTOR = 8
ALPHA_CHANNELS = VAE_FACTOR * VAE_FACTOR  # pixel_unshuffle(alpha, 8)
FBDD_IN_CHANNELS = 2 * LATENT_CHANNELS + ALPHA_CHANNELS  # 72
INPAINT_IN_CHANNELS = 9  # SD2 inpainting: latent 4 + mask 1 + masked-image latent 4
HFA_IN_CHANNELS = 7  # composite 3 + alpha 1 + decoded layer 3
TRAIN_SIZE = 512  # paper, Sec. 3.4: 512x512 training samples; FBDD's working size unless fbdd.json says otherwise
HFA_TILE = 512  # HFA runs in tiles of its training size on larger crops (GroupNorm statistics as in training)
HFA_OVERLAP = 64  # blended with linear ramps over the overlap, so no seams
FBDD_CONTEXT = 0.5  # of the object's box size: the margin of context FBDD sees around the object


def widen_conv_in(conv: nn.Conv2d) -> nn.Conv2d:
    """SD2-inpainting conv_in (9 channels) -> FBDD conv_in (72 channels).

    Channels 0-3 (noisy latent) copy the old 0-3; 4-7 (composite latent) copy the old masked-image latent
    5-8; each of the 64 alpha sub-pixel channels gets the old mask channel 4 divided by 64, so an alpha
    that is constant over each 8x8 block acts like the old mask, and zero alpha like a zero mask.
    """
    if conv.in_channels != INPAINT_IN_CHANNELS:
        raise ValueError(f"expected an inpainting conv_in with {INPAINT_IN_CHANNELS} channels, got {conv.in_channels}")
    # made where the old layer lives (a GPU, or the meta device of a lazy load), in its dtype
    new = nn.Conv2d(FBDD_IN_CHANNELS, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    bias=conv.bias is not None, device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        w = torch.zeros_like(new.weight)
        w[:, 0:4] = conv.weight[:, 0:4]
        w[:, 4:8] = conv.weight[:, 5:9]
        w[:, 8:] = conv.weight[:, 4:5] / ALPHA_CHANNELS
        new.weight.copy_(w)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


# The noise schedule of Stable Diffusion 2, every field set here rather than taken from a hub config that may lack
# it (SD2-inpainting ships a PNDM/epsilon config without clip_sample, and DDIM's default clip_sample=True would
# clip the predicted latents to +-1). FBDD predicts v (paper, Sec. 3.4).
SD2_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "trained_betas": None, "prediction_type": "v_prediction", "clip_sample": False, "thresholding": False,
    "set_alpha_to_one": False, "steps_offset": 1, "timestep_spacing": "leading", "rescale_betas_zero_snr": False,
}


def fbdd_scheduler(config: Any = None, cls: Any = None) -> Any:
    """The sampler (DDIM, default) or the training noise scheduler (`cls` = DDPMScheduler) of FBDD, from any
    scheduler config with SD2_SCHEDULE's fields forced."""
    if cls is None:
        from diffusers import DDIMScheduler

        cls = DDIMScheduler
    base = {k: v for k, v in dict(config or {}).items() if not k.startswith("_")}
    return cls.from_config({**base, **SD2_SCHEDULE})


def fbdd_unet_from_inpainting(unet: Any) -> Any:
    """A diffusers UNet2DConditionModel of SD2 inpainting, changed in place into an FBDD UNet."""
    unet.conv_in = widen_conv_in(unet.conv_in)
    unet.register_to_config(in_channels=FBDD_IN_CHANNELS)
    return unet


def fbdd_input(noisy: torch.Tensor, composite_latent: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """(N,4,h,w), (N,4,h,w), (N,1,8h,8w) -> (N,72,h,w)."""
    return torch.cat([noisy, composite_latent, F.pixel_unshuffle(alpha, VAE_FACTOR)], dim=1)


def _to_tensor(image: np.ndarray, device: Any, dtype: Any) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    return t.to(device=device, dtype=dtype)


def pad8(image: np.ndarray) -> tuple[np.ndarray, int, int]:
    h, w = image.shape[:2]
    ph, pw = (-h) % VAE_FACTOR, (-w) % VAE_FACTOR
    pad = ((0, ph), (0, pw)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, pad, mode="edge"), h, w


class FBDD:
    """Foreground/background decomposition by two conditional diffusion UNets sharing a VAE."""

    def __init__(self, unet_fg: Any, unet_bg: Any, vae: Any, scheduler: Any, null_embedding: torch.Tensor,
                 size: int = TRAIN_SIZE) -> None:
        self.unet_fg, self.unet_bg, self.vae, self.scheduler = unet_fg, unet_bg, vae, scheduler
        self.null_embedding = null_embedding  # the empty prompt's text embedding, computed once
        self.size = size  # the side of the samples it was trained on: its working size

    @classmethod
    def from_inpainting(cls, pipe: Any) -> "FBDD":
        """Initialise both UNets from an SD2-inpainting pipeline (training starts here)."""
        import copy

        tokens = pipe.tokenizer([""], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                                return_tensors="pt")
        with torch.no_grad():
            null = pipe.text_encoder(tokens.input_ids.to(pipe.text_encoder.device))[0]
        fg = fbdd_unet_from_inpainting(copy.deepcopy(pipe.unet))
        bg = fbdd_unet_from_inpainting(copy.deepcopy(pipe.unet))
        return cls(fg, bg, pipe.vae, fbdd_scheduler(pipe.scheduler.config), null)

    @classmethod
    def from_folder(cls, folder: str | Path, device: Any = "cpu", dtype: Any = torch.float32) -> "FBDD":
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from safetensors.torch import load_file

        folder = Path(folder)
        kw = {"dtype": dtype, "local_files_only": True}
        fg = UNet2DConditionModel.from_pretrained(folder / "unet_fg", **kw).to(device).eval()
        bg = UNet2DConditionModel.from_pretrained(folder / "unet_bg", **kw).to(device).eval()
        vae = AutoencoderKL.from_pretrained(folder / "vae", **kw).to(device).eval()
        scheduler = fbdd_scheduler(DDIMScheduler.load_config(folder / "scheduler"))
        null = load_file(str(folder / "null_embedding.safetensors"))["null_embedding"].to(device, dtype)
        for unet in (fg, bg):
            if unet.config.in_channels != FBDD_IN_CHANNELS:
                raise ValueError(f"{folder}: FBDD UNets need {FBDD_IN_CHANNELS} input channels")
        meta = json.loads((folder / "fbdd.json").read_text()) if (folder / "fbdd.json").is_file() else {}
        return cls(fg, bg, vae, scheduler, null, int(meta.get("size", TRAIN_SIZE)))

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        self.unet_fg.save_pretrained(folder / "unet_fg")
        self.unet_bg.save_pretrained(folder / "unet_bg")
        self.vae.save_pretrained(folder / "vae")
        self.scheduler.save_pretrained(folder / "scheduler")
        save_file({"null_embedding": self.null_embedding.detach().cpu().contiguous()},
                  str(folder / "null_embedding.safetensors"))
        (folder / "fbdd.json").write_text(json.dumps({"size": self.size}))

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) in [0,1] -> scaled VAE latent (N,4,H/8,W/8)."""
        return self.vae.encode(image * 2 - 1).latent_dist.mode() * self.vae.config.scaling_factor

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return ((self.vae.decode(latent / self.vae.config.scaling_factor).sample + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def decompose(self, composite: np.ndarray, alpha: np.ndarray, steps: int = 25, seed: int = 0,
                  progress: ProgressFn = no_progress) -> tuple[np.ndarray, np.ndarray]:
        """-> decoded (foreground, background), HxWx3 float32; one reverse diffusion per UNet."""
        device, dtype = self.unet_fg.device, self.unet_fg.dtype
        comp, h, w = pad8(composite[..., :3])
        a, _, _ = pad8(alpha)
        c = _to_tensor(comp, device, dtype)
        a_t = _to_tensor(a, device, dtype)
        c_lat = self.encode(c)
        cond = self.null_embedding.to(device, dtype).expand(c_lat.shape[0], -1, -1)
        outputs = []
        total = 2 * steps
        for k, unet in enumerate((self.unet_fg, self.unet_bg)):
            generator = torch.Generator(device="cpu").manual_seed(int(seed) + k)
            latents = torch.randn(c_lat.shape, generator=generator).to(device, dtype) * self.scheduler.init_noise_sigma
            self.scheduler.set_timesteps(steps, device=device)
            for i, t in enumerate(self.scheduler.timesteps):
                model_in = self.scheduler.scale_model_input(latents, t)
                v = unet(fbdd_input(model_in, c_lat, a_t), t, encoder_hidden_states=cond).sample
                latents = self.scheduler.step(v, t, latents).prev_sample
                progress("fbdd foreground" if k == 0 else "fbdd background", (k * steps + i + 1) / total)
            outputs.append(self.decode(latents)[0].permute(1, 2, 0).float().cpu().numpy()[:h, :w])
        return outputs[0], outputs[1]


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        groups = min(8, cout)
        self.net = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class HFANet(nn.Module):
    """FAN / BAN: a small UNet on composite + alpha + decoded layer (7 channels) predicting the refined
    layer as the decoded layer plus a residual (the high frequencies the VAE lost)."""

    def __init__(self, base_channels: int = 32, levels: int = 3) -> None:
        super().__init__()
        self.config = {"base_channels": base_channels, "levels": levels}
        chans = [base_channels * 2 ** i for i in range(levels)]
        self.down = nn.ModuleList()
        cin = HFA_IN_CHANNELS
        for c in chans:
            self.down.append(_Block(cin, c))
            cin = c
        self.mid = _Block(chans[-1], chans[-1])
        self.up = nn.ModuleList(_Block(chans[i] * 2, chans[i - 1] if i else chans[0])
                                for i in reversed(range(levels)))
        self.out = nn.Conv2d(chans[0], 3, 1)
        nn.init.zeros_(self.out.weight)  # untrained: the identity on the decoded layer
        nn.init.zeros_(self.out.bias)

    def forward(self, composite: torch.Tensor, alpha: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
        x = torch.cat([composite, alpha, layer], 1)
        h, w = x.shape[-2:]
        m = 2 ** len(self.down)
        x = F.pad(x, (0, (-w) % m, 0, (-h) % m), mode="replicate")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            skips.append(x)
            if i < len(self.down) - 1:
                x = F.avg_pool2d(x, 2)
        x = self.mid(x)
        for i, block in enumerate(self.up):
            skip = skips[len(skips) - 1 - i]
            if x.shape[-2:] != skip.shape[-2:]:
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return (layer + self.out(x)[..., :h, :w]).clamp(0, 1)


class HFA:
    """FAN for the foreground, BAN for the background; stored as fan/ban.safetensors + hfa.json."""

    def __init__(self, fan: HFANet, ban: HFANet, training: dict[str, Any] | None = None) -> None:
        self.fan, self.ban = fan.eval(), ban.eval()
        self.training = training or {}  # how it was trained (train/hfa.py): what its inputs came from

    @classmethod
    def new(cls, base_channels: int = 32, levels: int = 3) -> "HFA":
        return cls(HFANet(base_channels, levels), HFANet(base_channels, levels))

    @classmethod
    def from_folder(cls, folder: str | Path, device: Any = "cpu") -> "HFA":
        from safetensors.torch import load_file

        folder = Path(folder)
        config = json.loads((folder / "hfa.json").read_text())
        training = config.pop("training", {})
        nets = []
        for name in ("fan", "ban"):
            net = HFANet(**config)
            net.load_state_dict(load_file(str(folder / f"{name}.safetensors")))
            nets.append(net.to(device))
        hfa = cls(*nets)
        hfa.training = training
        return hfa

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "hfa.json").write_text(json.dumps({**self.fan.config, "training": self.training}))
        for name, net in (("fan", self.fan), ("ban", self.ban)):
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / f"{name}.safetensors"))

    @torch.no_grad()
    def refine(self, composite: np.ndarray, alpha: np.ndarray, fg: np.ndarray,
               bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        device = next(self.fan.parameters()).device
        c, a = _to_tensor(composite[..., :3], device, torch.float32), _to_tensor(alpha, device, torch.float32)
        out = []
        for net, layer in ((self.fan, fg), (self.ban, bg)):
            refined = net(c, a, _to_tensor(layer, device, torch.float32))
            out.append(refined[0].permute(1, 2, 0).cpu().numpy())
        return out[0], out[1]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _ramp(length: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """1 inside, rising linearly over `overlap` pixels at an edge shared with another tile."""
    w = np.ones(length, np.float32)
    ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    if not first:
        w[:overlap] = np.minimum(w[:overlap], ramp)
    if not last:
        w[-overlap:] = np.minimum(w[-overlap:], ramp[::-1])
    return w


def refine_tiled(hfa: HFA, composite: np.ndarray, alpha: np.ndarray, fg: np.ndarray, bg: np.ndarray,
                 tile: int = HFA_TILE, overlap: int = HFA_OVERLAP,
                 progress: ProgressFn = no_progress) -> tuple[np.ndarray, np.ndarray]:
    """HFA on overlapping tiles blended with linear ramps: memory bounded by the tile, whatever the canvas."""
    h, w = alpha.shape
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    if len(ys) == len(xs) == 1:
        return hfa.refine(composite, alpha, fg, bg)
    out_fg, out_bg = np.zeros((h, w, 3), np.float32), np.zeros((h, w, 3), np.float32)
    weight = np.zeros((h, w, 1), np.float32)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            win = (slice(y, min(y + tile, h)), slice(x, min(x + tile, w)))
            f, b = hfa.refine(composite[win], alpha[win], fg[win], bg[win])
            wy = _ramp(win[0].stop - y, overlap, i == 0, i == len(ys) - 1)
            wx = _ramp(win[1].stop - x, overlap, j == 0, j == len(xs) - 1)
            wt = (wy[:, None] * wx[None, :])[..., None]
            out_fg[win] += wt * f
            out_bg[win] += wt * b
            weight[win] += wt
            progress("hfa", (i * len(xs) + j + 1) / (len(ys) * len(xs)))
    out_fg /= weight
    out_bg /= weight
    return out_fg, out_bg


def working_shape(h: int, w: int, size: int) -> tuple[int, int]:
    """(height, width) with the area of size x size and the crop's aspect ratio, multiples of 8."""
    scale = size / math.sqrt(h * w)
    return (max(VAE_FACTOR, round(h * scale / VAE_FACTOR) * VAE_FACTOR),
            max(VAE_FACTOR, round(w * scale / VAE_FACTOR) * VAE_FACTOR))


def _resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
    shrink = h * w < image.shape[0] * image.shape[1]
    out = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def decompose_at_working_size(fbdd: FBDD, rgb: np.ndarray, alpha: np.ndarray, steps: int, seed: int,
                              size: int | None = None,
                              progress: ProgressFn = no_progress) -> tuple[np.ndarray, np.ndarray]:
    """FBDD at a working size near its training size (`size`, default fbdd.size; a multiple of 8), the decoded
    layers brought back to the crop's size: a 4096 px canvas costs what a 512 px one does."""
    h, w = alpha.shape
    size = size or fbdd.size
    if size % VAE_FACTOR:
        raise ValueError(f"the FBDD working size must be a multiple of {VAE_FACTOR}, got {size}")
    wh, ww = working_shape(h, w, size)
    fg, bg = fbdd.decompose(_resize(rgb, wh, ww), _resize(alpha, wh, ww), steps, seed, progress)
    return _resize(fg, h, w), _resize(bg, h, w)


def hfa_inputs(fbdd: FBDD, composite: np.ndarray, alpha: np.ndarray, steps: int, seed: int,
               size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """FBDD's decoded (foreground, background) over the whole image, exactly as a split gives them to HFA: FBDD on
    the object's crop (split_layer's, with FBDD_CONTEXT's margin) at its working size, brought back with the same
    resampling; outside the crop alpha is 0 and both layers are the composite, as split_layer leaves them there.
    HFA's training inputs are made here (train/hfa.py), so it learns on what it sees in use."""
    return on_object_crop(composite, alpha,
                          lambda rgb, a: decompose_at_working_size(fbdd, rgb, a, steps, seed, size))


def on_object_crop(composite: np.ndarray, alpha: np.ndarray,
                   layers: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """`layers` (rgb, alpha -> F, B) on the object's crop as split_layer gives it to the FBDD method (FBDD_CONTEXT's
    margin), the whole image's F and B back: the composite outside the crop, as split_layer leaves them there."""
    from .split import context_margin, object_crop

    rgb = composite[..., :3]
    crop = object_crop(alpha, context_margin(alpha, FBDD_CONTEXT))
    fg, bg = rgb.astype(np.float32, copy=True), rgb.astype(np.float32, copy=True)
    fg[crop], bg[crop] = layers(rgb[crop], alpha[crop])
    return fg, bg


def copy_through(composite: np.ndarray, alpha: np.ndarray, fg: np.ndarray,
                 bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paper's last step: composite pixels where alpha = 1 (foreground) and alpha = 0 (background)."""
    fg, bg = fg.copy(), bg.copy()
    fg[alpha >= 1.0] = composite[..., :3][alpha >= 1.0]
    bg[alpha <= 0.0] = composite[..., :3][alpha <= 0.0]
    return fg, bg


def fbdd_method(fbdd: FBDD, hfa: HFA, steps: int, seed: int, size: int | None = None) -> LayerMethod:
    """The layering stage as a layer method of split.split_layer: FBDD decomposition at the working size, HFA
    refinement at full resolution, copy-through; split_layer then applies the least-change composition step,
    which keeps what FBDD's foreground decoder and FAN made (this project's addition: see compose.py)."""

    def layers(rgb: np.ndarray, alpha: np.ndarray, progress: ProgressFn) -> tuple[np.ndarray, np.ndarray]:
        fg, bg = decompose_at_working_size(fbdd, rgb, alpha, steps, seed, size,
                                           lambda stage, f: progress(stage, 0.9 * f))
        fg, bg = refine_tiled(hfa, rgb, alpha, fg, bg, progress=lambda stage, f: progress(stage, 0.9 + 0.1 * f))
        progress("hfa", 1.0)
        return copy_through(rgb, alpha, fg, bg)

    return LayerMethod("fbdd+hfa", layers, local=True, composition=LEAST_CHANGE, context=FBDD_CONTEXT)
