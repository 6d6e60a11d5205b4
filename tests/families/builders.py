"""Tiny random pipelines of every family, written as diffusers folders, offline.

The components follow the shapes diffusers' own pipeline tests use; the tokenizers are built here
(a byte-level vocabulary with no merges for CLIP and Qwen, a character unigram for T5), so
nothing comes from a hub. Each build takes a moment on a CPU and paints 64x64 in two steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLFlux2,
    AutoencoderKLQwenImage,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinPipeline,
    Flux2Pipeline,
    Flux2Transformer2DModel,
    FluxFillPipeline,
    FluxPipeline,
    FluxTransformer2DModel,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from tokenizers.pre_tokenizers import ByteLevel
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    Mistral3Config,
    Mistral3ForConditionalGeneration,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3Model,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

# The name a test asks for, the family the catalog must tell from the folder.
SD1, SD2, SDXL, SD3, FLUX, ZIMAGE = "fam-sd1", "fam-sd2", "fam-sdxl", "fam-sd3", "fam-flux", "fam-zimage"
QWEN, FLUX2, FLUX2_KLEIN = "fam-qwenimage", "fam-flux2", "fam-flux2-klein"
FAMILY_OF = {
    SD1: "sd1",
    SD2: "sd2",
    SDXL: "sdxl",
    SD3: "sd3",
    FLUX: "flux",
    ZIMAGE: "zimage",
    QWEN: "qwenimage",
    FLUX2: "flux2",
    FLUX2_KLEIN: "flux2",
}
# An SD 1.x inpainting checkpoint: its UNet takes 9 channels (latents, masked image, mask).
SD1_INPAINT = "fam-sd1-inpaint"
# FLUX.1 Fill: its transformer takes the masked image and the mask beside the latents; it only inpaints.
FLUX_FILL = "fam-flux-fill"

_BYTES = sorted(ByteLevel.alphabet())
_T5_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'-▁"


def clip_tokenizer(max_length: int = 77) -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is every byte, alone and word-final, with no merges."""
    vocab = {character: index for index, character in enumerate(_BYTES)}
    vocab.update({character + "</w>": len(_BYTES) + index for index, character in enumerate(_BYTES)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def t5_tokenizer() -> T5Tokenizer:
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(c, -1.0) for c in _T5_CHARACTERS]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def qwen_tokenizer() -> Qwen2Tokenizer:
    """A byte-level Qwen tokenizer with a chat template, as Z-Image formats its prompts."""
    vocab = {character: index for index, character in enumerate(_BYTES)}
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[special] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    return tokenizer


def _clip_config(tokenizer: CLIPTokenizer, hidden: int = 32) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        hidden_size=hidden,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(tokenizer),
        hidden_act="gelu",
        projection_dim=32,
    )


def _t5(tokenizer: T5Tokenizer, width: int = 32) -> T5EncoderModel:
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=width,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return T5EncoderModel(config)


def _sd_vae(latent_channels: int = 4, **extra: Any) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=64,
        **extra,
    )


def _flow_vae(latent_channels: int, blocks: int = 1) -> AutoencoderKL:
    """The shape diffusers tests SD3 and FLUX with: one block keeps the latent at the picture's size."""
    return AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(4,) * blocks,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )


def _sd_scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )


def build_sd(folder: Path, *, sd2: bool = False, in_channels: int = 4) -> Path:
    """SD 1.x (or 2.x: linear projections, as the catalog tells them) with CLIP text encoding."""
    torch.manual_seed(0)
    tokenizer = clip_tokenizer()
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
        use_linear_projection=sd2,
    )
    pipeline = StableDiffusionPipeline(
        vae=_sd_vae(),
        text_encoder=CLIPTextModel(_clip_config(tokenizer)),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_sd_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def build_sdxl(folder: Path) -> Path:
    """SDXL: two CLIP encoders (the second with projection) and size conditioning."""
    torch.manual_seed(0)
    tokenizer = clip_tokenizer()
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 size numbers x 8, plus the 32-wide pooled text
        cross_attention_dim=80,  # both encoders' hidden states side by side: 32 + 48
        norm_num_groups=1,
    )
    pipeline = StableDiffusionXLPipeline(
        vae=_sd_vae(),
        text_encoder=CLIPTextModel(_clip_config(tokenizer)),
        # Wider than the first, as OpenCLIP bigG is wider than CLIP-L: a single file tells them apart by width.
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(tokenizer, hidden=48)),
        tokenizer=tokenizer,
        tokenizer_2=clip_tokenizer(),
        unet=unet,
        scheduler=_sd_scheduler(),
    )
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def build_sd3(folder: Path, *, stability_shapes: bool = False) -> Path:
    """SD3: an MMDiT over two CLIP encoders and T5.

    ``stability_shapes``: the encoders shaped as in Stability's single files, where diffusers tells
    the two CLIPs apart by width (CLIP-G wider than CLIP-L), T5 is as wide as both together, and
    CLIP-L's projection is the identity (what diffusers gives it when it reads such a file).
    """
    torch.manual_seed(0)
    tokenizer, t5 = clip_tokenizer(), t5_tokenizer()
    clip_g, t5_width = (48, 80) if stability_shapes else (32, 32)
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=1,
        in_channels=16,  # 16 latent channels, as the real SD3 VAE (its inpaint pipeline checks)
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=t5_width,
        pooled_projection_dim=64,
        out_channels=16,
    )
    # Two blocks halve the latent's side: a quarter of the image tokens for its joint attention. Most
    # tiny random decoders draw every flat colour alike; this seed's tells them apart, so a test can
    # see a palette move.
    torch.manual_seed(2)
    vae = _flow_vae(16, blocks=2)
    torch.manual_seed(0)
    clip_l = CLIPTextModelWithProjection(_clip_config(tokenizer))
    if stability_shapes:
        with torch.no_grad():
            clip_l.text_projection.weight.copy_(torch.eye(32))
    pipeline = StableDiffusion3Pipeline(
        transformer=transformer,
        vae=vae,
        text_encoder=clip_l,
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(tokenizer, hidden=clip_g)),
        text_encoder_3=_t5(t5, t5_width),
        tokenizer=tokenizer,
        tokenizer_2=clip_tokenizer(),
        tokenizer_3=t5,
        scheduler=FlowMatchEulerDiscreteScheduler(),
    )
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def _flux_parts(*, in_channels: int, out_channels: int | None, vae_blocks: int) -> dict[str, Any]:
    """A tiny FLUX.1 transformer with guidance embedded (distilled guidance), CLIP pooled text and T5."""
    torch.manual_seed(0)
    tokenizer, t5 = clip_tokenizer(), t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=in_channels,
        out_channels=out_channels,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
        guidance_embeds=True,
    )
    return {
        "transformer": transformer,
        "vae": _flow_vae(vae_blocks),
        "text_encoder": CLIPTextModel(_clip_config(tokenizer)),
        "text_encoder_2": _t5(t5),
        "tokenizer": tokenizer,
        "tokenizer_2": t5,
        "scheduler": FlowMatchEulerDiscreteScheduler(),
    }


def build_flux(folder: Path) -> Path:
    """FLUX.1 dev-like: guidance embedded (distilled guidance), CLIP pooled text plus T5."""
    pipeline = FluxPipeline(**_flux_parts(in_channels=4, out_channels=None, vae_blocks=1))
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def build_flux_fill(folder: Path) -> Path:
    """FLUX.1 Fill: packed latents (4) + packed masked-image latents (4) + the packed mask (4 x 3)."""
    pipeline = FluxFillPipeline(**_flux_parts(in_channels=20, out_channels=8, vae_blocks=2))
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def build_zimage(folder: Path) -> Path:
    """Z-Image (2025): a single-stream DiT over a Qwen3 text encoder."""
    torch.manual_seed(0)
    tokenizer = qwen_tokenizer()
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        norm_eps=1e-5,
        qk_norm=True,
        cap_feat_dim=16,
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=[8, 4, 4],
        axes_lens=[256, 32, 32],
    )
    with torch.no_grad():
        # Created with torch.empty: fixed so the build is the same every time.
        transformer.x_pad_token.copy_(torch.ones_like(transformer.x_pad_token))
        transformer.cap_pad_token.copy_(torch.ones_like(transformer.cap_pad_token))
    text_encoder = Qwen3Model(
        Qwen3Config(
            hidden_size=16,
            intermediate_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=8,
            vocab_size=len(tokenizer),
            max_position_embeddings=512,
        )
    )
    # One group per norm: a decoder normalising 2-channel groups would erase any shift of the palette.
    vae = _flow_vae(16, blocks=2)
    pipeline = ZImagePipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def build_qwenimage(folder: Path) -> Path:
    """Qwen-Image (2025): an MMDiT over a Qwen2.5-VL text encoder and a video-style VAE."""
    torch.manual_seed(0)
    tokenizer = qwen_tokenizer()
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=3,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    vae = AutoencoderKLQwenImage(
        base_dim=24,
        z_dim=4,
        dim_mult=[1, 2, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    vocab = len(tokenizer)
    text = {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2}
    rope = {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}
    config = Qwen2_5_VLConfig(
        text_config=text | {"num_key_value_heads": 2, "rope_scaling": rope, "rope_theta": 1e6, "vocab_size": vocab + 3},
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16,
        vocab_size=vocab + 3,
        # Vision tokens past the text vocabulary: the studio only ever sends text.
        vision_start_token_id=vocab,
        vision_end_token_id=vocab + 1,
        vision_token_id=vocab + 2,
    )
    pipeline = QwenImagePipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=Qwen2_5_VLForConditionalGeneration(config).eval(),
        tokenizer=tokenizer,
    )
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


# Mistral's chat markers, as FLUX.2 formats its prompts: a system message, then the user's text.
_MISTRAL_SPECIALS = ("<unk>", "<s>", "</s>", "<pad>", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[INST]", "[/INST]")
_MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}[SYSTEM_PROMPT]{% else %}[INST]{% endif %}"
    "{% for part in m['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% if m['role'] == 'system' %}[/SYSTEM_PROMPT]{% else %}[/INST]{% endif %}{% endfor %}"
)


def mistral_tokenizer() -> Qwen2Tokenizer:
    """A byte-level tokenizer with Mistral's chat markers and a template for FLUX.2's message lists.

    Real FLUX.2 folders ship a Pixtral processor (tokenizer plus image processor), which needs
    torchvision; FLUX.2 only calls ``apply_chat_template`` on it, which a tokenizer answers alike.
    """
    vocab = {character: index for index, character in enumerate(_BYTES)}
    for special in _MISTRAL_SPECIALS:
        vocab[special] = len(vocab)
    specials = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], **specials)
    tokenizer.chat_template = _MISTRAL_TEMPLATE
    return tokenizer


def _flux2_denoising_parts() -> tuple[Flux2Transformer2DModel, AutoencoderKLFlux2]:
    """FLUX.2's DiT over three stacked 16-wide hidden states, and its batch-normed VAE (4 channels, 2x2 patches)."""
    transformer = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels in 2x2 patches
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=48,  # three stacked 16-wide hidden states
        timestep_guidance_channels=256,
        axes_dims_rope=[4, 4, 4, 4],
    )
    vae = AutoencoderKLFlux2(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(4, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    return transformer, vae


def build_flux2(folder: Path) -> Path:
    """FLUX.2 [dev] (2025): a DiT over three stacked hidden layers of a Mistral-3 encoder, a batch-normed VAE."""
    torch.manual_seed(0)
    tokenizer = mistral_tokenizer()
    # FLUX.2 reads the encoder's hidden states 10, 20 and 30: the tiny encoder has 30 layers.
    text = {
        "model_type": "mistral",
        "vocab_size": len(tokenizer),
        "hidden_size": 16,
        "intermediate_size": 16,
        "max_position_embeddings": 1024,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "num_hidden_layers": 30,
        "rope_theta": 1e6,
        "sliding_window": None,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    # The vision tower is never used: the studio sends FLUX.2 text only.
    vision = {"model_type": "pixtral", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}
    vision |= {"intermediate_size": 16, "image_size": 32, "patch_size": 8, "head_dim": 8}
    config = Mistral3Config(
        text_config=text,
        vision_config=vision,
        image_token_index=len(tokenizer),  # past the vocabulary, as no image token is ever sent
        vision_feature_layer=-1,
        spatial_merge_size=1,
    )
    transformer, vae = _flux2_denoising_parts()
    pipeline = Flux2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=Mistral3ForConditionalGeneration(config).eval(),
        tokenizer=tokenizer,
        transformer=transformer,
        vae=vae,
    )
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def build_flux2_klein(folder: Path, *, distilled: bool = False) -> Path:
    """FLUX.2 [klein] (2026): FLUX.2's DiT over a Qwen3 encoder read at layers 9, 18 and 27, with true CFG."""
    torch.manual_seed(0)
    tokenizer = qwen_tokenizer()
    transformer, vae = _flux2_denoising_parts()
    config = Qwen3Config(
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=27,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        vocab_size=len(tokenizer),
        max_position_embeddings=1024,
    )
    pipeline = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=Qwen3ForCausalLM(config).eval(),
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=distilled,
    )
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


BUILDERS = {
    SD1: build_sd,
    SD2: lambda folder: build_sd(folder, sd2=True),
    SDXL: build_sdxl,
    SD3: build_sd3,
    FLUX: build_flux,
    ZIMAGE: build_zimage,
    QWEN: build_qwenimage,
    FLUX2: build_flux2,
    FLUX2_KLEIN: build_flux2_klein,
}


def build_all(root: Path) -> Path:
    for name, build in BUILDERS.items():
        build(root / name)
    build_sd(root / SD1_INPAINT, in_channels=9)
    build_flux_fill(root / FLUX_FILL)
    return root
