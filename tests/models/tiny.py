"""Tiny randomly initialised models of the real classes, saved like hub checkpoints (see shared/tiny-models.md).

They go through the same loading code as real weights (`--model NAME=FOLDER` / ModelManager), on CPU
in milliseconds. Random weights give random boxes and masks and a constant 0.5 ViTMatte alpha, so
tests assert shapes, ranges and plumbing, not quality.
"""

import json
from pathlib import Path

import torch

WORDS = ["a", "cat", "dog", "bird", "sofa", "glass", "transparent", "object", "the", "on", "red", "fox", "in",
         "snow", "ball"]


def _bert_vocab(folder: Path) -> Path:
    """Grounding DINO hard-codes [CLS]=101, [SEP]=102, "."=1012, "?"=1029 in its text side."""
    vocab = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}
    next_id = 104
    for word in WORDS + [f"w{i}" for i in range(920)]:
        while next_id in (1012, 1029):
            next_id += 1
        vocab[word] = next_id
        next_id += 1
    by_id = {v: k for k, v in vocab.items()}
    path = folder / "vocab.txt"
    path.write_text("\n".join(by_id.get(i, f"[unused{i}]") for i in range(max(by_id) + 1)) + "\n")
    return path


def grounding_dino(folder: Path) -> None:
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
        SwinConfig,
    )

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(vocab=str(_bert_vocab(folder)))
    backbone = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4, image_size=64,
                          out_indices=[2, 3, 4])
    text = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                      vocab_size=len(tokenizer))
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text, d_model=32, num_queries=20,
                                 encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                 encoder_attention_heads=2, decoder_attention_heads=2, encoder_n_points=2,
                                 decoder_n_points=2, num_feature_levels=4)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 128, "longest_edge": 192})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def sam(folder: Path) -> None:
    from transformers import (
        SamConfig,
        SamImageProcessorPil,
        SamMaskDecoderConfig,
        SamModel,
        SamProcessor,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    vision = SamVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=256, patch_size=16,
                             window_size=4, output_channels=32, mlp_dim=64, global_attn_indexes=[1], num_pos_feats=16)
    prompt = SamPromptEncoderConfig(hidden_size=32, image_size=256, patch_size=16, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64,
                                   iou_head_hidden_dim=32)
    SamModel(SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
             ).save_pretrained(folder)
    processor = SamImageProcessorPil(size={"longest_edge": 256}, pad_size={"height": 256, "width": 256})
    SamProcessor(image_processor=processor).save_pretrained(folder)


def vitmatte(folder: Path) -> None:
    from transformers import VitDetConfig, VitMatteConfig, VitMatteForImageMatting, VitMatteImageProcessorPil

    backbone = VitDetConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_channels=4, patch_size=16,
                            image_size=64, mlp_ratio=2, out_features=["stage2"])
    config = VitMatteConfig(backbone_config=backbone, hidden_size=32, convstream_hidden_sizes=[8, 16, 32],
                            fusion_hidden_sizes=[32, 16, 8, 8])
    VitMatteForImageMatting(config).save_pretrained(folder)
    VitMatteImageProcessorPil().save_pretrained(folder)


def depth_anything(folder: Path) -> None:
    """Depth Anything V2's classes (a DINOv2 backbone, the DPT-like head) at a tiny size."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessorPil

    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            patch_size=14, image_size=56, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessorPil(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                         do_pad=False).save_pretrained(folder)


def _clip_tokenizer():
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for s in symbols + [s + "</w>" for s in symbols]:
        vocab.setdefault(s, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77), len(vocab)


def sdxl_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=4, sample_size=16,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=(2, 4), addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8, in_channels=4, out_channels=4)


def sdxl(folder: Path) -> None:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer, vocab_size = _clip_tokenizer()
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                vocab_size=vocab_size, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vae = AutoencoderKL(block_out_channels=[8, 8, 16, 16], norm_num_groups=4, latent_channels=4, sample_size=64,
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(CLIPTextConfig(**text)),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**text, projection_dim=32)),
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=sdxl_unet(), scheduler=scheduler,
    ).save_pretrained(folder)


def controlnet(folder: Path) -> None:
    from diffusers import ControlNetModel

    # four conditioning blocks: three stride-2 steps bring the control image to latent size (/8)
    ControlNetModel.from_unet(sdxl_unet(), conditioning_embedding_out_channels=(8, 8, 16, 16)).save_pretrained(folder)


def sd2_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=4, sample_size=16, in_channels=9,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=(2, 4))


def sd2_inpaint_pipeline():
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer, vocab_size = _clip_tokenizer()
    text = CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, vocab_size=vocab_size, max_position_embeddings=77,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    vae = AutoencoderKL(block_out_channels=[8, 8, 16, 16], norm_num_groups=4, latent_channels=4, sample_size=64,
                        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              prediction_type="v_prediction", steps_offset=1, clip_sample=False,
                              set_alpha_to_one=False)
    return StableDiffusionInpaintPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=sd2_unet(),
                                          scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)


def sd2_inpaint(folder: Path) -> None:
    sd2_inpaint_pipeline().save_pretrained(folder)


def layering(folder: Path) -> None:
    """FBDD initialised from the tiny SD2 inpainting model (conv_in widened to 72) + untrained HFA."""
    from layeringdiff.stages.layering import FBDD, HFA

    FBDD.from_inpainting(sd2_inpaint_pipeline()).save(folder / "fbdd")
    HFA.new(base_channels=8, levels=2).save(folder / "hfa")


BUILDERS = {"sdxl": sdxl, "controlnet-canny": controlnet, "controlnet-depth": controlnet,
            "grounding-dino": grounding_dino, "sam": sam, "vitmatte": vitmatte, "sd2-inpaint": sd2_inpaint,
            "layering": layering, "depth-anything": depth_anything}


def build_all(root: Path, seed: int = 0, only: tuple[str, ...] | None = None) -> dict[str, str]:
    """Build the tiny models under root/<name>; returns name -> folder (the --models-dir layout)."""
    done = root / "done.json"
    if done.exists():
        return json.loads(done.read_text())
    folders = {}
    for i, (name, build) in enumerate(BUILDERS.items()):
        if only is not None and name not in only:
            continue
        torch.manual_seed(seed + i)
        build(root / name)
        folders[name] = str(root / name)
    done.write_text(json.dumps(folders))
    return folders
