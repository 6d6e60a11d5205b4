"""Trains studio-tiny: a small Stable-Diffusion-architecture pipeline on procedural paintings.

Three phases, each resumable from the checkpoint in the work directory:
1. render the data set (``app.tiny.data``) and embed its captions with the frozen MiniLM encoder;
2. train the AutoencoderKL (64x64x3 <-> 8x8x4) and encode every image to latents once;
3. train the UNet2DConditionModel on those latents, with classifier-free-guidance dropout and an
   exponential moving average of its weights, exporting a diffusers folder at every checkpoint.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from tqdm import tqdm

from app.engine.text_encoders import MINILM_PACKAGE, load_minilm

logger = logging.getLogger(__name__)

MAX_TOKENS = 32


@dataclass
class TrainConfig:
    out_dir: Path
    work_dir: Path
    samples: int = 24_000
    data_seed: int = 0
    image_size: int = 64
    vae_steps: int = 1_400
    vae_batch: int = 32
    unet_steps: int = 5_500
    unet_batch: int = 48
    unet_lr: float = 5e-4
    unet_channels: tuple[int, ...] = (64, 128)
    vae_channels: tuple[int, ...] = (16, 32, 64, 128)
    # Extra loss weight on the subject's pixels: it covers a tenth of the frame but carries the
    # colour and the place the caption asks for, which plain MSE lets the sky drown out.
    vae_subject_weight: float = 5.0
    unet_subject_weight: float = 3.0
    cfg_dropout: float = 0.1
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    device: str = "cpu"
    seed: int = 0
    # CPU threads for torch; 0 keeps torch's default (one per core).
    threads: int = 0


def build_vae(config: TrainConfig) -> AutoencoderKL:
    levels = len(config.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=config.vae_channels,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=config.image_size,
    )


def build_unet(config: TrainConfig, latent_size: int) -> UNet2DConditionModel:
    # Cross-attention blocks at every level: each holds a self-attention layer too, which the
    # shared-attention style reference needs at every latent resolution, the finest included.
    levels = len(config.unet_channels)
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=config.unet_channels,
        down_block_types=("CrossAttnDownBlock2D",) * levels,
        up_block_types=("CrossAttnUpBlock2D",) * levels,
        cross_attention_dim=384,
        attention_head_dim=8,
        norm_num_groups=32,
    )


def build_scheduler() -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="epsilon",
        clip_sample=False,
        steps_offset=1,
    )


# --- phase 1: data ---------------------------------------------------------------------------


def _render_range(args: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from app.tiny.data import make_sample

    seed, start, stop, size = args
    images = np.zeros((stop - start, size, size, 3), dtype=np.uint8)
    masks = np.zeros((stop - start, size, size), dtype=np.uint8)
    captions = []
    for offset, index in enumerate(range(start, stop)):
        sample = make_sample(seed, index, size=size)
        images[offset] = np.asarray(sample.image)
        masks[offset] = np.asarray(sample.subject_mask)
        captions.append(sample.caption)
    return images, masks, captions


def render_dataset(config: TrainConfig, workers: int = 2) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images, subject masks and captions of the whole data set."""
    chunk = 500
    ranges = [
        (config.data_seed, start, min(start + chunk, config.samples), config.image_size)
        for start in range(0, config.samples, chunk)
    ]
    images, masks, captions = [], [], []
    with Pool(workers) as pool:
        for part_images, part_masks, part_captions in tqdm(
            pool.imap(_render_range, ranges), total=len(ranges), desc="render"
        ):
            images.append(part_images)
            masks.append(part_masks)
            captions.extend(part_captions)
    return np.concatenate(images), np.concatenate(masks), captions


@torch.no_grad()
def embed_captions(captions: list[str], device: str, batch: int = 256) -> np.ndarray:
    """Token embeddings exactly as the diffusers pipeline computes them at inference."""
    tokenizer, encoder = load_minilm(max_tokens=MAX_TOKENS)
    encoder.to(device).eval()
    out = np.zeros((len(captions), MAX_TOKENS, encoder.config.hidden_size), dtype=np.float16)
    for start in tqdm(range(0, len(captions), batch), desc="embed captions"):
        tokens = tokenizer(
            captions[start : start + batch],
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        hidden = encoder(tokens.input_ids.to(device))[0]
        out[start : start + batch] = hidden.float().cpu().numpy().astype(np.float16)
    return out


# --- phase 2: autoencoder ------------------------------------------------------------------


def _to_tensor(images: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _subject_weight(masks: np.ndarray, extra: float, size: int, device: str) -> torch.Tensor:
    """Per-pixel loss weights at ``size``: 1 on the background, 1 + extra where the subject is."""
    subject = torch.from_numpy(masks).to(device).float()[:, None] / 255.0
    if subject.shape[-1] != size:
        # A latent cell counts as subject if any of its pixels is.
        subject = F.adaptive_max_pool2d(subject, size)
    return 1.0 + extra * subject


def _weighted_mean(error: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    weight = weight.expand_as(error)
    return (error * weight).sum() / weight.sum()


def train_vae(
    config: TrainConfig,
    vae: AutoencoderKL,
    images: np.ndarray,
    masks: np.ndarray,
    start_step: int,
    save: Callable[[int], None],
) -> None:
    generator = np.random.default_rng(config.seed + start_step)
    optimiser = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    vae.train()
    bar = tqdm(range(start_step, config.vae_steps), desc="vae", initial=start_step, total=config.vae_steps)
    for step in bar:
        lr = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / config.vae_steps))
        for group in optimiser.param_groups:
            group["lr"] = lr
        index = generator.integers(0, len(images), config.vae_batch)
        batch = _to_tensor(images[index], config.device)
        weight = _subject_weight(masks[index], config.vae_subject_weight, config.image_size, config.device)
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        error = reconstruction - batch
        # A whisper of KL keeps the latents bounded without blurring flat colours.
        loss = (
            _weighted_mean(error.abs(), weight) + _weighted_mean(error.square(), weight) + 1e-6 * posterior.kl().mean()
        )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.vae_steps:
            save(step + 1)
    vae.eval()


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, images: np.ndarray, device: str, batch: int = 256) -> torch.Tensor:
    parts = []
    for start in tqdm(range(0, len(images), batch), desc="encode latents"):
        parts.append(vae.encode(_to_tensor(images[start : start + batch], device)).latent_dist.mean.cpu())
    return torch.cat(parts)


# --- phase 3: UNet -------------------------------------------------------------------------


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for ema_param, param in zip(ema.parameters(), model.parameters(), strict=True):
            ema_param.lerp_(param, 1 - decay)


def train_unet(
    config: TrainConfig,
    unet: UNet2DConditionModel,
    ema: UNet2DConditionModel,
    optimiser: torch.optim.Optimizer,
    latents: torch.Tensor,
    masks: np.ndarray,
    embeddings: np.ndarray,
    empty_embedding: np.ndarray,
    start_step: int,
    save: Callable[[int], None],
) -> float:
    scheduler = build_scheduler()
    alphas = scheduler.alphas_cumprod.to(config.device)
    generator = np.random.default_rng(config.seed + 10_000 + start_step)
    empty = torch.from_numpy(empty_embedding).float().to(config.device)
    unet.train()
    running = float("nan")
    bar = tqdm(range(start_step, config.unet_steps), desc="unet", initial=start_step, total=config.unet_steps)
    for step in bar:
        warmup = min(1.0, (step + 1) / 300)
        lr = config.unet_lr * warmup * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / config.unet_steps)))
        for group in optimiser.param_groups:
            group["lr"] = lr
        index = generator.integers(0, len(latents), config.unet_batch)
        clean = latents[index].to(config.device)
        context = torch.from_numpy(embeddings[index]).float().to(config.device)
        dropped = torch.from_numpy(generator.random(config.unet_batch) < config.cfg_dropout).to(config.device)
        context = torch.where(dropped[:, None, None], empty[None], context)
        noise = torch.randn_like(clean)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (config.unet_batch,), device=config.device)
        alpha = alphas[timesteps].view(-1, 1, 1, 1)
        noisy = alpha.sqrt() * clean + (1 - alpha).sqrt() * noise
        prediction = unet(noisy, timesteps, context).sample
        weight = _subject_weight(masks[index], config.unet_subject_weight, clean.shape[-1], config.device)
        loss = _weighted_mean((prediction - noise).square(), weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimiser.step()
        _ema_update(ema, unet, min(config.ema_decay, (1 + step) / (10 + step)))
        running = loss.item() if math.isnan(running) else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr:.1e}")
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.unet_steps:
            save(step + 1)
    return running


# --- export --------------------------------------------------------------------------------


def export_pipeline(out_dir: Path, vae: AutoencoderKL, unet: UNet2DConditionModel, extra: dict[str, object]) -> None:
    """Writes a diffusers folder whose text encoder is the installed MiniLM package, not a copy."""
    out_dir.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(vae).to("cpu", torch.float16).save_pretrained(out_dir / "vae")
    copy.deepcopy(unet).to("cpu", torch.float16).save_pretrained(out_dir / "unet")
    build_scheduler().save_pretrained(out_dir / "scheduler")
    model_index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.30.0",
        "_studio_text_encoder_package": MINILM_PACKAGE,
        "_studio_max_tokens": MAX_TOKENS,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDPMScheduler"],
        "text_encoder": ["transformers", "BertModel"],
        "tokenizer": ["transformers", "BertTokenizerFast"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (out_dir / "model_index.json").write_text(json.dumps(model_index, indent=2) + "\n")
    (out_dir / "training.json").write_text(json.dumps(extra, indent=2, default=str) + "\n")


# --- driver --------------------------------------------------------------------------------


def train(config: TrainConfig) -> Path:
    """Runs (or resumes) all phases and returns the exported model folder."""
    torch.manual_seed(config.seed)
    if config.threads > 0:
        # Beside other busy processes, one thread per step beats several threads waiting on each other.
        torch.set_num_threads(config.threads)
    config.work_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    stats: dict[str, object] = {"config": {k: v for k, v in asdict(config).items()}}

    # 1. data
    data_file = config.work_dir / "data.npz"
    data = np.load(data_file, allow_pickle=False) if data_file.exists() else None
    if data is not None and "masks" in data:
        images, masks = data["images"], data["masks"]
        embeddings, empty_embedding = data["embeddings"], data["empty"]
    else:
        images, masks, captions = render_dataset(config)
        embeddings = embed_captions(captions, config.device)
        empty_embedding = embed_captions([""], config.device)[0]
        np.savez(data_file, images=images, masks=masks, embeddings=embeddings, empty=empty_embedding)

    # 2. autoencoder
    vae = build_vae(config).to(config.device)
    vae_file = config.work_dir / "vae.pt"
    vae_step = 0
    if vae_file.exists():
        state = torch.load(vae_file, map_location=config.device, weights_only=True)
        vae.load_state_dict(state["model"])
        vae_step = int(state["step"])

    def save_vae(step: int) -> None:
        torch.save({"model": vae.state_dict(), "step": step}, vae_file)

    if vae_step < config.vae_steps:
        train_vae(config, vae, images, masks, vae_step, save_vae)
    vae.eval()
    latents_file = config.work_dir / "latents.pt"
    if latents_file.exists() and vae_step >= config.vae_steps:
        latents = torch.load(latents_file, weights_only=True)
    else:
        latents = encode_latents(vae, images, config.device)
        torch.save(latents, latents_file)
    scaling = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scaling)
    latents = latents * scaling
    with torch.no_grad():
        sample = _to_tensor(images[:256], config.device)
        recon = vae.decode(vae.encode(sample).latent_dist.mean).sample
        stats["vae_reconstruction_mae_255"] = float((recon - sample).abs().mean() * 127.5)
    stats["latent_scaling_factor"] = scaling

    # 3. UNet
    unet = build_unet(config, latent_size=latents.shape[-1]).to(config.device)
    ema = copy.deepcopy(unet).requires_grad_(False)
    optimiser = torch.optim.AdamW(unet.parameters(), lr=config.unet_lr, weight_decay=1e-2)
    unet_file = config.work_dir / "unet.pt"
    unet_step = 0
    if unet_file.exists():
        state = torch.load(unet_file, map_location=config.device, weights_only=True)
        unet.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimiser.load_state_dict(state["optimiser"])
        unet_step = int(state["step"])
        stats["resumed_from_step"] = unet_step

    def save_unet(step: int) -> None:
        torch.save(
            {"model": unet.state_dict(), "ema": ema.state_dict(), "optimiser": optimiser.state_dict(), "step": step},
            unet_file,
        )
        stats["unet_steps_done"] = step
        stats["wall_seconds_this_run"] = round(time.time() - started)
        export_pipeline(config.out_dir, vae, ema, stats)

    final_loss = train_unet(
        config, unet, ema, optimiser, latents, masks, embeddings, empty_embedding, unet_step, save_unet
    )
    stats["final_unet_loss"] = final_loss
    save_unet(config.unet_steps)
    return config.out_dir
