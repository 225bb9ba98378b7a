"""Every model of the registry (layeringdiff.models.REGISTRY) at its published size, built on the meta device.

    .venv/bin/python benchmarks/fullsize.py

Each architecture is written out below as the plain config its publisher released, with where it comes from, and
built with the class the product's loading code uses (ModelManager; FBDD and HFA through this project's own
constructors). Built on the meta device the models have shapes but no storage, so the full-size stack is counted
on any machine in seconds, without its weights (none can be downloaded here).

Printed: each model's parameter count against the count its publishers state, the bytes its weights need in
fp32, fp16 and bf16, the total per pipeline step, and the peak weight memory of "Generate + split" with every
model resident and with sequential CPU offload. The memory figures are weights (parameters and buffers) only:
activations, which grow with the canvas (1024 x 1024 for Generate), the CUDA context and the allocator's cache
come on top.
"""

import functools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "backend") not in sys.path:  # the backend without installing it (it is, in the project's .venv)
    sys.path.insert(0, str(ROOT / "backend"))

# ---- published architectures ------------------------------------------------------------------------------------
# Hub configs are written with every architecture field of the released config.json (bookkeeping keys such as
# _class_name, _diffusers_version, torch_dtype left out). The hub was not reachable from where this was written: each
# was read from indexed copies of that config.json (the repository's own page where indexed, else duplicates and
# fine-tunes whose _name_or_path names the original snapshot) and checked against the original implementation's
# config named beside it.

# stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (UNet2DConditionModel); original:
# Stability-AI/generative-models configs/inference/sd_xl_base.yaml network_config (model_channels 320, channel_mult
# [1, 2, 4], transformer_depth [1, 2, 10], context_dim 2048, adm_in_channels 2816, num_head_channels 64).
SDXL_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],  # diffusers' name for the number of heads (64 channels each)
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "class_embed_type": None,
    "class_embeddings_concat": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_dim": 2048,
    "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "sample_size": 128,
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": None,
    "use_linear_projection": True,
}

# stabilityai/stable-diffusion-xl-base-1.0 text_encoder/config.json (CLIPTextModel): OpenAI CLIP ViT-L/14's text
# tower (sd_xl_base.yaml: FrozenCLIPEmbedder).
SDXL_TEXT_ENCODER: dict[str, Any] = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 2,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "pad_token_id": 1,
    "projection_dim": 768,
    "vocab_size": 49408,
}

# stabilityai/stable-diffusion-xl-base-1.0 text_encoder_2/config.json (CLIPTextModelWithProjection): OpenCLIP
# ViT-bigG/14's text tower, all 32 layers and its projection (sd_xl_base.yaml: FrozenOpenCLIPEmbedder2, arch
# ViT-bigG-14, always_return_pooled); diffusers' converter sets projection_dim 1280.
SDXL_TEXT_ENCODER_2: dict[str, Any] = {
    **SDXL_TEXT_ENCODER,
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
}

# stabilityai/stable-diffusion-xl-base-1.0 vae/config.json (AutoencoderKL); original: sd_xl_base.yaml
# first_stage_config ddconfig (ch 128, ch_mult [1, 2, 4, 4], num_res_blocks 2, z_channels 4).
SDXL_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

# diffusers/controlnet-canny-sdxl-1.0 and diffusers/controlnet-depth-sdxl-1.0 config.json (ControlNetModel): the
# same architecture for both, a trainable copy of the SDXL UNet's encoder and middle block.
SDXL_CONTROLNET: dict[str, Any] = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "class_embed_type": None,
    "conditioning_channels": 3,
    "conditioning_embedding_out_channels": [16, 32, 96, 256],
    "controlnet_conditioning_channel_order": "rgb",
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "global_pool_conditions": False,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_time_scale_shift": "default",
    "transformer_layers_per_block": [1, 2, 10],
    "upcast_attention": None,
    "use_linear_projection": True,
}

# stabilityai/stable-diffusion-2-inpainting unet/config.json (UNet2DConditionModel); original:
# Stability-AI/stablediffusion configs/stable-diffusion/v2-inpainting-inference.yaml unet_config (in_channels 9,
# model_channels 320, channel_mult [1, 2, 4, 4], attention_resolutions [4, 2, 1], num_head_channels 64,
# use_linear_in_transformer, context_dim 1024).
SD2_INPAINT_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 9,  # latent 4 + mask 1 + masked-image latent 4
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "upcast_attention": False,
    "use_linear_projection": True,
}

# stabilityai/stable-diffusion-2-inpainting text_encoder/config.json (CLIPTextModel): OpenCLIP ViT-H/14's text
# tower as diffusers converts it (v2-inpainting-inference.yaml: FrozenOpenCLIPEmbedder, layer "penultimate"): the
# last of its 24 layers is dropped ("resblocks.23" is skipped in diffusers'
# src/diffusers/pipelines/stable_diffusion/convert_from_ckpt.py, convert_open_clip_checkpoint) and so is its
# text projection, which a CLIPTextModel has not.
SD2_TEXT_ENCODER: dict[str, Any] = {
    **SDXL_TEXT_ENCODER,
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "projection_dim": 512,
}

# stabilityai/stable-diffusion-2-inpainting vae/config.json (AutoencoderKL): the SDXL VAE's architecture
# (v2-inpainting-inference.yaml first_stage_config), scaling_factor left at the default 0.18215.
SD2_VAE: dict[str, Any] = {
    **{k: v for k, v in SDXL_VAE.items() if k not in ("force_upcast", "scaling_factor")},
    "sample_size": 512,
}

# FBDD (this project's training; no public weights): two UNets initialised from SD2 inpainting with conv_in widened
# from 9 to 4 + 4 + 64 = 72 channels (stages/layering.py: widen_conv_in, fbdd_unet_from_inpainting, which also
# registers in_channels=72 in the config). Built through that function; this is the config it leaves.
FBDD_UNET: dict[str, Any] = {**SD2_INPAINT_UNET, "in_channels": 72}

# IDEA-Research/grounding-dino-tiny config.json (GroundingDinoForObjectDetection, loaded by the product through
# AutoModelForZeroShotObjectDetection): all fields are GroundingDinoConfig's defaults except backbone_config
# {"model_type": "swin", "out_indices": [2, 3, 4]} and text_config {"model_type": "bert"}. The Swin-T and BERT-base
# fields are written out from huggingface/transformers
# src/transformers/models/grounding_dino/convert_grounding_dino_to_hf.py (get_grounding_dino_config, "tiny") and
# IDEA-Research/GroundingDINO groundingdino/config/GroundingDINO_SwinT_OGC.py (swin_T_224_1k, bert-base-uncased,
# 6 + 6 layers, hidden_dim 256, 900 queries, 4 feature levels, max_text_len 256).
GDINO_SWIN: dict[str, Any] = {
    "depths": [2, 2, 6, 2],
    "embed_dim": 96,
    "image_size": 224,
    "num_heads": [3, 6, 12, 24],
    "out_indices": [2, 3, 4],
    "patch_size": 4,
    "window_size": 7,
}
GDINO_BERT: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "type_vocab_size": 2,
    "vocab_size": 30522,
}
GDINO: dict[str, Any] = {
    "d_model": 256,
    "decoder_attention_heads": 8,
    "decoder_ffn_dim": 2048,
    "decoder_layers": 6,
    "decoder_n_points": 4,
    "encoder_attention_heads": 8,
    "encoder_ffn_dim": 2048,
    "encoder_layers": 6,
    "encoder_n_points": 4,
    "max_text_len": 256,
    "num_feature_levels": 4,
    "num_queries": 900,
    "two_stage": True,
}

# facebook/sam-vit-base config.json (SamModel): its vision_config holds no architecture field, SamVisionConfig's
# defaults being ViT-B. Written out from facebookresearch/segment-anything segment_anything/build_sam.py
# (build_sam_vit_b: embed_dim 768, depth 12, heads 12, global attention at 2, 5, 8, 11; window 14, 1024 px,
# patch 16, prompt_embed_dim 256, mask decoder depth 2 / mlp 2048 / 8 heads) and transformers'
# convert_sam_to_hf.py (sam_vit_b: SamVisionConfig()).
SAM_VISION: dict[str, Any] = {
    "global_attn_indexes": [2, 5, 8, 11],
    "hidden_size": 768,
    "image_size": 1024,
    "mlp_ratio": 4.0,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "output_channels": 256,
    "patch_size": 16,
    "qkv_bias": True,
    "use_abs_pos": True,
    "use_rel_pos": True,
    "window_size": 14,
}
SAM_PROMPT: dict[str, Any] = {"hidden_size": 256, "image_size": 1024, "mask_input_channels": 16, "patch_size": 16}
SAM_DECODER: dict[str, Any] = {
    "hidden_size": 256,
    "iou_head_depth": 3,
    "iou_head_hidden_dim": 256,
    "mlp_dim": 2048,
    "num_attention_heads": 8,
    "num_hidden_layers": 2,
    "num_multimask_outputs": 3,
}

# hustvl/vitmatte-small-composition-1k config.json (VitMatteForImageMatting, ViTDet small backbone: 384 wide,
# 6 heads, 4 input channels for image + trimap); the same fields as transformers' convert_vitmatte_to_hf.py.
VITMATTE_BACKBONE: dict[str, Any] = {
    "hidden_size": 384,
    "image_size": 512,
    "num_attention_heads": 6,
    "num_channels": 4,
    "out_features": ["stage12"],
    "out_indices": [12],
    "residual_block_indices": [2, 5, 8, 11],
    "use_relative_position_embeddings": True,
    "window_block_indices": [0, 1, 3, 4, 6, 7, 9, 10],
    "window_size": 14,
}
VITMATTE: dict[str, Any] = {
    "convstream_hidden_sizes": [48, 96, 192],
    "fusion_hidden_sizes": [256, 128, 64, 32],
    "hidden_size": 384,
    "initializer_range": 0.02,
}

# depth-anything/Depth-Anything-V2-Small-hf config.json (DepthAnythingForDepthEstimation: a DINOv2 ViT-S/14 backbone,
# the DPT-like head of DepthAnything-V2's depth_anything_v2/dpt.py with features 64 and out_channels
# [48, 96, 192, 384] for "vits"); the same fields as transformers' convert_depth_anything_to_hf.py.
DEPTH_BACKBONE: dict[str, Any] = {
    "hidden_size": 384,
    "image_size": 518,
    "layerscale_value": 1.0,
    "mlp_ratio": 4,
    "num_attention_heads": 6,
    "num_hidden_layers": 12,
    "out_indices": [9, 10, 11, 12],
    "patch_size": 14,
    "reshape_hidden_states": False,
}
DEPTH_ANYTHING: dict[str, Any] = {
    "depth_estimation_type": "relative",
    "fusion_hidden_size": 64,
    "head_hidden_size": 32,
    "head_in_index": -1,
    "neck_hidden_sizes": [48, 96, 192, 384],
    "patch_size": 14,
    "reassemble_factors": [4, 2, 1, 0.5],
    "reassemble_hidden_size": 384,
}

# Carve/LaMa-ONNX lama_fp32.onnx: an ONNX export of advimman/lama's big-lama (its README), run on the CPU by
# onnxruntime. Not a torch model: not built here, listed at its published size.
LAMA_ONNX_BYTES = 208_000_000  # "208 MB" in the repository's file list
LAMA_PUBLISHED_PARAMS = 51_000_000  # Big LaMa, "51M": Suvorov et al., LaMa (WACV 2022, arXiv:2109.07161)


# ---- building on the meta device --------------------------------------------------------------------------------
def meta_model(make: Callable[[], nn.Module]) -> nn.Module:
    """`make()` on the meta device: the factory calls that make its tensors give shapes, no storage. A parameter
    made by the legacy torch.Tensor(n, m) constructor ignores the default device (Grounding DINO's level_embed,
    4 KB) and is moved after. Not accelerate's init_empty_weights: it registers every parameter anew on the meta
    device, so a parameter two modules share (Grounding DINO's box heads, SAM's positional embedding) counts twice."""
    with torch.device("meta"):
        model = make()
    moved: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is not None and param.device.type != "meta":
                if id(param) not in moved:  # one new parameter for each shared one: sharing is kept
                    moved[id(param)] = nn.Parameter(param.detach().to("meta"), param.requires_grad)
                module._parameters[name] = moved[id(param)]
    return model


def _diffusers(cls_name: str, config: dict[str, Any]) -> nn.Module:
    import diffusers

    return meta_model(lambda: getattr(diffusers, cls_name).from_config(config))


def _clip(cls_name: str, config: dict[str, Any]) -> nn.Module:
    import transformers

    return meta_model(lambda: getattr(transformers, cls_name)(transformers.CLIPTextConfig(**config)))


def build_fbdd_unet() -> nn.Module:
    """An FBDD UNet the way training makes one: the SD2-inpainting UNet changed by the project's own function."""
    from layeringdiff.stages.layering import fbdd_unet_from_inpainting

    unet = _diffusers("UNet2DConditionModel", SD2_INPAINT_UNET)
    return meta_model(lambda: fbdd_unet_from_inpainting(unet))


def build_grounding_dino() -> nn.Module:
    import transformers

    config = transformers.GroundingDinoConfig(backbone_config=transformers.SwinConfig(**GDINO_SWIN),
                                              text_config=transformers.BertConfig(**GDINO_BERT), **GDINO)
    # the product's loader: AutoModelForZeroShotObjectDetection, which makes a GroundingDinoForObjectDetection
    return meta_model(lambda: transformers.AutoModelForZeroShotObjectDetection.from_config(config))


def build_sam() -> nn.Module:
    import transformers

    config = transformers.SamConfig(vision_config=SAM_VISION, prompt_encoder_config=SAM_PROMPT,
                                    mask_decoder_config=SAM_DECODER)
    return meta_model(lambda: transformers.SamModel(config))


def build_vitmatte() -> nn.Module:
    import transformers

    config = transformers.VitMatteConfig(backbone_config=transformers.VitDetConfig(**VITMATTE_BACKBONE), **VITMATTE)
    return meta_model(lambda: transformers.VitMatteForImageMatting(config))


def build_depth_anything() -> nn.Module:
    import transformers

    config = transformers.DepthAnythingConfig(backbone_config=transformers.Dinov2Config(**DEPTH_BACKBONE),
                                              **DEPTH_ANYTHING)
    return meta_model(lambda: transformers.DepthAnythingForDepthEstimation(config))


def hfa_size() -> tuple[int, int]:
    """(base_channels, levels) that `layeringdiff train hfa` uses: HFATrainConfig's defaults (the CLI sets neither)."""
    from layeringdiff.train.hfa import HFATrainConfig

    config = HFATrainConfig(out="")
    return config.base_channels, config.levels


def build_hfa(which: str) -> nn.Module:
    """FAN or BAN through the project's own constructor (HFA.new, as train/hfa.py calls it)."""
    from layeringdiff.stages.layering import HFA

    size = hfa_size()
    return meta_model(lambda: getattr(HFA.new(*size), which))


# ---- the models and their published sizes ------------------------------------------------------------------------
@dataclass(frozen=True)
class Published:
    """A size as its publisher states it, in parameters or as a file's bytes."""

    figure: str  # as written: "2.6B", "123.65M", "335 MB"
    value: float  # that figure as a number (parameters, or bytes for a file)
    digits: int  # significant digits given; <= 2: the exact count recorded here is the reference, and the figure
    # is checked to be its rounding
    where: str
    bytes_per_param: int = 0  # a file size: 4 for an fp32 file, 2 for fp16; 0: the figure counts parameters
    parts: tuple[str, ...] = ()  # the submodules the figure covers (attribute paths); empty: the whole model
    extra: int = 0  # parameters the figure covers that the built model has not (worked out from the config: `note`)
    agrees: bool = True  # False: a figure that does not match the released architecture (see `note`)
    note: str = ""

    def quantity(self, params: int) -> float:
        """Our count of what the figure covers (`params` + `extra`) in the figure's own unit (parameters or bytes)."""
        params += self.extra
        return params * self.bytes_per_param if self.bytes_per_param else params


@dataclass(frozen=True)
class Model:
    key: str
    registry: str  # its key(s) in layeringdiff.models.REGISTRY, comma-separated
    cls: str  # the class the product loads it with
    config: str  # the config above, by name
    build: Callable[[], nn.Module]
    counted: int  # the exact parameter count of the built model, recorded here
    published: tuple[Published, ...]  # empty: no figure published; the count is this file's own
    loaded: str  # the dtype the product loads it in on a CUDA GPU (ModelManager)
    note: str = ""  # where an unpublished count comes from


def clip_layer_params(config: dict[str, Any]) -> int:
    """One CLIP text transformer layer: q, k, v, out projections, the MLP, two layer norms."""
    h, i = config["hidden_size"], config["intermediate_size"]
    return 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h


SDXL_PAPER = "SDXL paper (Podell et al. 2023, arXiv:2307.01952)"
OPENCLIP_PROFILE = "mlfoundations/open_clip docs/model_profile.csv"
CN_NOTE = ("no parameter count is published for the SDXL ControlNets (model cards and diffusers' docs state "
           "none): the count is this file's own, checked against the size of the released fp32 file")
SAM_NOTE = ("the released ViT-B image encoder (build_sam_vit_b's ImageEncoderViT, SamVisionEncoder here) has "
            "89,670,912 parameters, which rounds to 90M, not 91M; built the same way ViT-L has 308.28M and ViT-H "
            "637.03M (the paper: 308M, 636M; its FAQ: 632M), so the ViT-B figure is the paper's loose one. The "
            "whole model checks out against the released file")

HFA_NOTE = ("this project's training: HFA.new(base_channels=32, levels=3), train/hfa.py's HFATrainConfig defaults "
            "(the CLI sets neither)")

MODELS: dict[str, Model] = {m.key: m for m in (
    Model("sdxl-unet", "sdxl", "diffusers.UNet2DConditionModel", "SDXL_UNET",
          lambda: _diffusers("UNet2DConditionModel", SDXL_UNET), 2_567_463_684,
          (Published("2.6B", 2.6e9, 2, f"{SDXL_PAPER}, Sec. 2.1 and Tab. 1"),), "fp16"),
    Model("sdxl-text-encoder", "sdxl", "transformers.CLIPTextModel", "SDXL_TEXT_ENCODER",
          lambda: _clip("CLIPTextModel", SDXL_TEXT_ENCODER), 123_060_480,
          (Published("123.65M", 123.65e6, 5, f"{OPENCLIP_PROFILE}, ViT-L-14 text_mparams", extra=768 * 768,
                     note="counts the 768 x 768 text projection, which CLIPTextModel has not"),), "fp16"),
    Model("sdxl-text-encoder-2", "sdxl", "transformers.CLIPTextModelWithProjection", "SDXL_TEXT_ENCODER_2",
          lambda: _clip("CLIPTextModelWithProjection", SDXL_TEXT_ENCODER_2), 694_659_840,
          (Published("694.66M", 694.66e6, 5, f"{OPENCLIP_PROFILE}, ViT-bigG-14 text_mparams"),), "fp16"),
    Model("sdxl-vae", "sdxl", "diffusers.AutoencoderKL", "SDXL_VAE",
          lambda: _diffusers("AutoencoderKL", SDXL_VAE), 83_653_863,
          (Published("335 MB", 335e6, 3, "stabilityai/sdxl-vae: sdxl_vae.safetensors, fp32 (no count published)",
                     bytes_per_param=4),), "fp16"),
    Model("controlnet", "controlnet-canny, controlnet-depth", "diffusers.ControlNetModel", "SDXL_CONTROLNET",
          lambda: _diffusers("ControlNetModel", SDXL_CONTROLNET), 1_251_014_160,
          (Published("5 GB", 5e9, 1, "diffusers/controlnet-{canny,depth}-sdxl-1.0: diffusion_pytorch_model."
                     "safetensors, fp32 (counted here, not published)", bytes_per_param=4, note=CN_NOTE),
           Published("2.5 GB", 2.5e9, 2, "the same repositories: diffusion_pytorch_model.fp16.safetensors",
                     bytes_per_param=2)), "fp16"),
    Model("sd2-inpaint-unet", "sd2-inpaint", "diffusers.UNet2DConditionModel", "SD2_INPAINT_UNET",
          lambda: _diffusers("UNet2DConditionModel", SD2_INPAINT_UNET), 865_925_124,
          (Published("865M", 865e6, 3, f"{SDXL_PAPER}, Tab. 1 (SD 2.x UNet)",
                     note="the text-to-image UNet; inpainting's 5 extra input channels add 14,400"),), "fp16"),
    Model("sd2-text-encoder", "sd2-inpaint", "transformers.CLIPTextModel", "SD2_TEXT_ENCODER",
          lambda: _clip("CLIPTextModel", SD2_TEXT_ENCODER), 340_387_840,
          (Published("354.03M", 354.03e6, 5, f"{OPENCLIP_PROFILE}, ViT-H-14 text_mparams",
                     extra=clip_layer_params(SD2_TEXT_ENCODER) + 1024 * 1024,
                     note="counts all 24 layers and the 1024 x 1024 projection; the converted model keeps 23 "
                          "layers and no projection (+12,596,224 + 1,048,576 here)"),), "fp16"),
    Model("sd2-vae", "sd2-inpaint, layering", "diffusers.AutoencoderKL", "SD2_VAE",
          lambda: _diffusers("AutoencoderKL", SD2_VAE), 83_653_863,
          (Published("335 MB", 335e6, 3, "stabilityai/stable-diffusion-2-inpainting: vae/diffusion_pytorch_model."
                     "safetensors, fp32 (no count published)", bytes_per_param=4),), "fp16"),
    Model("fbdd-unet", "layering", "diffusers.UNet2DConditionModel", "FBDD_UNET", build_fbdd_unet, 866_106_564,
          (), "fp16", "this project's training (two of them): the SD2-inpainting UNet with conv_in widened from 9 to "
                      "72 input channels, + 63 x 320 x 3 x 3 = 181,440 parameters"),
    Model("grounding-dino", "grounding-dino", "transformers.GroundingDinoForObjectDetection", "GDINO",
          build_grounding_dino, 172_250_626,
          (Published("172M", 172e6, 3, "IDEA-Research/grounding-dino-tiny model page (the hub's count of "
                     "model.safetensors)"),), "fp32"),
    Model("sam", "sam", "transformers.SamModel", "SAM_VISION", build_sam, 93_735_728,
          (Published("375 MB", 375e6, 3, "facebook/sam-vit-base model.safetensors and the original "
                     "sam_vit_b_01ec64.pth, fp32", bytes_per_param=4),
           Published("91M", 91e6, 2, "SAM paper (Kirillov et al. 2023, arXiv:2304.02643), image encoder ablation "
                     "(ViT-B 91M, ViT-L 308M, ViT-H 636M)", parts=("vision_encoder",), agrees=False, note=SAM_NOTE),
           Published("4M", 4e6, 1, "segment-anything.com FAQ: the prompt encoder and mask decoder",
                     parts=("prompt_encoder", "mask_decoder"))), "fp32"),
    Model("vitmatte", "vitmatte", "transformers.VitMatteForImageMatting", "VITMATTE", build_vitmatte, 25_814_753,
          (Published("25.8M", 25.8e6, 3, "ViTMatte paper (Yao et al. 2023, arXiv:2305.15272), ViTMatte-S"),), "fp32"),
    Model("depth-anything", "depth-anything", "transformers.DepthAnythingForDepthEstimation", "DEPTH_ANYTHING",
          build_depth_anything, 24_785_089,
          (Published("24.8M", 24.8e6, 3, "Depth Anything V2 paper (Yang et al. 2024, arXiv:2406.09414), "
                     "Depth-Anything-V2-Small"),), "fp32"),
    Model("fan", "layering", "layeringdiff.stages.layering.HFANet", "HFA (HFATrainConfig)",
          lambda: build_hfa("fan"), 843_651, (), "fp32", HFA_NOTE),
    Model("ban", "layering", "layeringdiff.stages.layering.HFANet", "HFA (HFATrainConfig)",
          lambda: build_hfa("ban"), 843_651, (), "fp32", HFA_NOTE),
)}

# Figures published for several models together.
COMBINED: dict[str, tuple[tuple[str, ...], Published]] = {
    "SDXL text encoders": (("sdxl-text-encoder", "sdxl-text-encoder-2"),
                           Published("817M", 817e6, 3, f"{SDXL_PAPER}, Sec. 2.1")),
}

# The models each pipeline step holds (layeringdiff.job_memory.models_needed, ModelManager's loaders).
STEPS: dict[str, tuple[str, ...]] = {
    "Generate": ("sdxl-unet", "sdxl-text-encoder", "sdxl-text-encoder-2", "sdxl-vae"),
    "Generate, guided (+ one ControlNet)": ("sdxl-unet", "sdxl-text-encoder", "sdxl-text-encoder-2", "sdxl-vae",
                                            "controlnet"),
    "Phrase split": ("grounding-dino", "sam", "vitmatte"),
    "Layering (FBDD + HFA)": ("fbdd-unet", "fbdd-unet", "sd2-vae", "fan", "ban"),
    "Layering zero-shot (SD2 inpainting)": ("sd2-inpaint-unet", "sd2-text-encoder", "sd2-vae"),
    "Split into all layers (SAM + Depth Anything V2)": ("sam", "depth-anything"),
}
PEAKS: dict[str, tuple[str, ...]] = {
    "Generate + split, 1024 x 1024": STEPS["Generate"] + STEPS["Phrase split"],
    "Generate (guided) + split, 1024 x 1024": STEPS["Generate, guided (+ one ControlNet)"] + STEPS["Phrase split"],
}
DTYPES: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2}


def params_of(model: nn.Module, parts: tuple[str, ...] = ()) -> int:
    """Parameters, each shared one once (parameters() skips repeats: Grounding DINO shares its box heads)."""
    modules = [model.get_submodule(p) for p in parts] or [model]
    return sum(p.numel() for m in modules for p in m.parameters())


def round_sig(x: float, digits: int) -> float:
    """`x` to `digits` significant digits."""
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


# ---- weight memory ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Footprint:
    params: int
    float_buffers: int  # elements of floating-point buffers: cast with the weights
    other_buffer_bytes: int  # integer buffers (index tables) keep their dtype

    def nbytes(self, dtype: str) -> int:
        return (self.params + self.float_buffers) * DTYPES[dtype] + self.other_buffer_bytes


def footprint_of(model: nn.Module) -> Footprint:
    buffers = [b for _, b in model.named_buffers()]
    return Footprint(params_of(model), sum(b.numel() for b in buffers if b.is_floating_point()),
                     sum(b.numel() * b.element_size() for b in buffers if not b.is_floating_point()))


@functools.cache
def footprints() -> dict[str, Footprint]:
    """Every model built once and measured (a few seconds on two cores; nothing allocated)."""
    return {key: footprint_of(model.build()) for key, model in MODELS.items()}


def step_bytes(names: tuple[str, ...], dtype: str, fps: dict[str, Footprint]) -> int:
    """`dtype` for all of them, or "as loaded": each model in the dtype the product loads it in on CUDA."""
    return sum(fps[n].nbytes(MODELS[n].loaded if dtype == "as loaded" else dtype) for n in names)


def peak_bytes(names: tuple[str, ...], dtype: str, fps: dict[str, Footprint], offload: bool) -> int:
    """Weights on the GPU at the peak: all resident, or with sequential CPU offload only the largest one."""
    sizes = [step_bytes((n,), dtype, fps) for n in names]
    return max(sizes) if offload else sum(sizes)


def gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def count(n: float) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def _md(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def comparisons() -> list[tuple[str, Published, int]]:
    """(what, published figure, our count of what it covers) for every published figure."""
    out = []
    for key, model in MODELS.items():
        parts = [p for p in model.published if p.parts]
        built = model.build() if parts else None
        for pub in model.published:
            ours = params_of(built, pub.parts) if pub.parts and built is not None else footprints()[key].params
            out.append((key + (f" ({', '.join(pub.parts)})" if pub.parts else ""), pub, ours))
    for what, (names, pub) in COMBINED.items():
        out.append((what, pub, sum(footprints()[n].params for n in names)))
    return out


def markdown() -> str:
    fps = footprints()
    lines = ["## Parameters: built here vs published", ""]
    rows = []
    for what, pub, ours in comparisons():
        dev = round(pub.quantity(ours) / pub.value - 1, 4) + 0.0  # + 0.0: no "-0.00%"
        check = "agrees" if pub.agrees else "differs (see note)"
        if pub.digits <= 2 and pub.agrees:
            check = f"rounds to {pub.figure}"
        rows.append([what, f"{ours:,}", pub.figure, f"{dev:+.2%}", check, pub.where + (f"; {pub.note}" if pub.note
                                                                                        else "")])
    for key, model in MODELS.items():
        if not model.published:
            rows.append([key, f"{fps[key].params:,}", "none", "", "counted here, not published", model.note])
    lines += _md(["Model", "Built", "Published", "Deviation", "Check", "Where stated"], rows)

    lines += ["", "## Weight memory per model", ""]
    rows = [[key, m.cls, count(fps[key].params), gib(fps[key].nbytes("fp32")), gib(fps[key].nbytes("fp16")),
             gib(fps[key].nbytes("bf16")), f"{gib(fps[key].nbytes(m.loaded))} ({m.loaded})"]
            for key, m in MODELS.items()]
    rows.append(["lama", "ONNX (onnxruntime, CPU)", f"~{count(LAMA_PUBLISHED_PARAMS)} (published)",
                 f"{gib(LAMA_ONNX_BYTES)} (file)", "n/a", "n/a", "fp32, on the CPU"])
    lines += _md(["Model", "Class", "Parameters", "fp32", "fp16", "bf16", "As loaded on CUDA"], rows)

    lines += ["", "## Weight memory per pipeline step", ""]
    rows = [[step, " + ".join(names), gib(step_bytes(names, "fp32", fps)), gib(step_bytes(names, "fp16", fps)),
             gib(step_bytes(names, "bf16", fps)), gib(step_bytes(names, "as loaded", fps))]
            for step, names in STEPS.items()]
    lines += _md(["Step", "Models", "fp32", "fp16", "bf16", "As loaded on CUDA"], rows)

    lines += ["", "## Peak weight memory", ""]
    rows = []
    for what, names in PEAKS.items():
        for offload in (False, True):
            how = "sequential CPU offload (largest model resident)" if offload else "every model resident"
            rows.append([what, how] + [gib(peak_bytes(names, d, fps, offload))
                                       for d in ("fp32", "fp16", "bf16", "as loaded")])
    lines += _md(["Job", "Residency", "fp32", "fp16", "bf16", "As loaded on CUDA"], rows)
    # the product's cpu_offload (ModelManager._place) offloads the diffusers pipelines only: the split models, moved
    # to the GPU whole, stay there once loaded, beside the one SDXL model on the GPU at a time
    product = step_bytes(("sdxl-unet",), "as loaded", fps) + step_bytes(STEPS["Phrase split"], "as loaded", fps)
    lines += ["", "Weights only (parameters and buffers). Activations, which grow with the 1024 x 1024 canvas, the "
              "CUDA context and the allocator's cache come on top. \"As loaded on CUDA\": ModelManager loads the "
              "diffusers pipelines (and FBDD) in fp16 on CUDA, the transformers models and HFA in their checkpoints' "
              "fp32. Sequential offload as defined here keeps one model on the GPU; the product's cpu_offload setting "
              "offloads only the diffusers pipelines, so once the split models are loaded a Generate + split holds "
              f"the SDXL UNet and them: {gib(product)} as loaded. LaMa runs on the CPU and is in no GPU figure."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
