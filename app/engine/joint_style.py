"""Style reference on transformer families: StyleAligned's shared attention on joint attention.

The UNet version (``app.engine.style``) shares self-attention; SD3, FLUX.1, FLUX.2, Qwen-Image
and Z-Image have no separate self-attention, only joint attention over text and image tokens
together. Here:
1. The references are encoded to clean latents in the pipeline's own latent layout (packed
   2x2 for FLUX.1, patchified and batch-normalised for FLUX.2), and ride at the front of the
   batch with an empty prompt.
2. Flow matching needs no inversion: after every step each reference's latent is put back at
   ``(1 - sigma) * clean + sigma * noise`` for the sigma the next step starts from, so its
   tokens are the reference's own at that noise level.
3. While the denoiser runs, every attention call lets the generated images attend to the
   references' whole joint sequence (keys and values) as well as their own, each reference's
   keys biased by log(weight x strength); the references attend only to themselves.
4. After every step the generated latents' per-channel mean and spread are pulled towards the
   references' (AdaIN on latents), which carries the palette.

Attention is reached through ``torch.nn.functional.scaled_dot_product_attention``, which every
diffusers attention processor ends in, wrapped once and active only on the thread that runs a
styled call and only inside the denoiser's forward (the text encoders use it too).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from app.engine.style import StyleReference

_EPS = 1e-5


@dataclass
class JointStyleSetup:
    count: int  # references at the front of the batch (of each half with classifier-free guidance)
    images: int  # the images painted after them
    clean: torch.Tensor  # the references' clean latents, in the pipeline's layout
    noise: torch.Tensor  # fixed noise each reference is walked back along
    strength: float
    log_weights: torch.Tensor  # one per reference: log(weight * strength)


@torch.no_grad()
def prepare(
    pipeline: Any, references: list[StyleReference], *, images: int, width: int, height: int, strength: float
) -> JointStyleSetup:
    """Encodes the references at the painting's size into the latents the pipeline denoises."""
    vae = pipeline.vae
    pictures = [reference.image.convert("RGB").resize((width, height)) for reference in references]
    pixels = pipeline.image_processor.preprocess(pictures, height=height, width=width)
    pixels = pixels.to(device=vae.device, dtype=vae.dtype)
    if hasattr(pipeline, "_patchify_latents"):
        # FLUX.2: latents in 2x2 patches, batch-normalised by the VAE's running statistics, as tokens.
        clean = pipeline._pack_latents(pipeline._encode_vae_image(pixels, generator=None))
    elif getattr(vae.config, "latents_mean", None) is not None:
        # Qwen-Image's video VAE: one frame in, latents normalised per channel.
        latents = vae.encode(pixels.unsqueeze(2)).latent_dist.mean[:, :, 0]
        mean = torch.tensor(vae.config.latents_mean, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
        std = torch.tensor(vae.config.latents_std, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
        clean = (latents - mean) / std
    else:
        latents = vae.encode(pixels).latent_dist.mean
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        clean = (latents - shift) * vae.config.scaling_factor
    if hasattr(pipeline, "_pack_latents") and clean.ndim == 4:  # FLUX.1-style 2x2 packed tokens
        batch, channels, rows, columns = clean.shape
        clean = pipeline._pack_latents(clean, batch, channels, rows, columns)
    generator = torch.Generator("cpu").manual_seed(0)
    noise = torch.randn(clean.shape, generator=generator).to(clean.device, clean.dtype)
    weights = torch.tensor([max(reference.weight, 0.0) * strength for reference in references])
    return JointStyleSetup(
        count=len(references),
        images=images,
        clean=clean,
        noise=noise,
        strength=strength,
        log_weights=torch.log(weights.clamp_min(1e-6)),
    )


def _channel_stats(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Packed latents are (batch, tokens, channels); others (batch, channels, height, width).
    dims = (1,) if latents.ndim == 3 else (-2, -1)
    return latents.mean(dim=dims, keepdim=True), latents.std(dim=dims, keepdim=True) + _EPS


def step_end(setup: JointStyleSetup, pipeline: Any, latents: torch.Tensor) -> torch.Tensor:
    """After a step: the references back on their noising path, the palette pulled towards theirs."""
    scheduler = pipeline.scheduler
    index = min(int(scheduler.step_index), len(scheduler.sigmas) - 1)
    sigma = float(scheduler.sigmas[index])
    references = ((1.0 - sigma) * setup.clean.float() + sigma * setup.noise.float()).to(latents.dtype)
    latents = latents.clone()
    latents[: setup.count] = references
    if setup.strength > 0 and latents.shape[0] > setup.count:
        targets = latents[setup.count :].float()
        mean, std = _channel_stats(targets)
        ref_mean, ref_std = _channel_stats(references.float())
        weights = torch.softmax(setup.log_weights.to(targets.device), dim=0).view(-1, *([1] * (targets.ndim - 1)))
        ref_mean, ref_std = (ref_mean * weights).sum(0, keepdim=True), (ref_std * weights).sum(0, keepdim=True)
        matched = (targets - mean) / std * ref_std + ref_mean
        latents[setup.count :] = (targets + setup.strength * (matched - targets)).to(latents.dtype)
    return latents


# -- attention -----------------------------------------------------------------------------

_local = threading.local()
_original_sdpa: Callable[..., torch.Tensor] | None = None
_install_lock = threading.Lock()


def _install() -> None:
    """Wraps torch's SDPA once per process; the wrapper does nothing unless this thread asks."""
    global _original_sdpa
    with _install_lock:
        if _original_sdpa is None:
            _original_sdpa = F.scaled_dot_product_attention
            # Same call signature as torch's (keywords passed through); typed stubs list them positionally.
            torch.nn.functional.scaled_dot_product_attention = _shared_sdpa  # type: ignore[assignment]


def _additive(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(~mask, float("-inf"))
    return mask.to(like.dtype)


def _shared_sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    assert _original_sdpa is not None
    plain = _original_sdpa(
        query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale, **kwargs
    )
    setup: JointStyleSetup | None = getattr(_local, "active", None)
    if setup is None or is_causal or query.ndim != 4:
        return plain
    # The batch is [references, images] once, or twice with classifier-free guidance.
    count, per_group = setup.count, setup.count + setup.images
    batch, heads, rows, tokens = query.shape[0], key.shape[1], query.shape[2], key.shape[2]
    if batch % per_group or (attn_mask is not None and attn_mask.ndim not in (2, 4)):
        return plain
    mask = _additive(attn_mask, query)
    if mask is not None and mask.ndim == 2:  # (batch, keys): padding only
        mask = mask[:, None, None, :]
    output = plain.clone()
    images = setup.images
    for start in range(0, batch, per_group):
        refs, targets = slice(start, start + count), slice(start + count, start + per_group)
        shared_k = key[refs].transpose(0, 1).reshape(1, heads, count * tokens, -1).expand(images, -1, -1, -1)
        shared_v = value[refs].transpose(0, 1).reshape(1, heads, count * tokens, -1).expand(images, -1, -1, -1)
        bias = setup.log_weights.to(query.device, query.dtype).repeat_interleave(tokens)
        ref_bias = bias.view(1, 1, 1, -1).expand(images, 1, rows, -1)
        own = torch.zeros(images, 1, rows, tokens, device=query.device, dtype=query.dtype)
        if mask is not None:
            own = own + mask[targets].expand(images, -1, rows, -1)[:, :1]
            # Each reference's keys keep their own padding mask.
            ref_masks = mask[refs].expand(count, -1, rows, -1)[:, :1]
            ref_bias = ref_bias + ref_masks.permute(1, 2, 0, 3).reshape(1, 1, rows, count * tokens)
        output[targets] = _original_sdpa(
            query[targets],
            torch.cat([key[targets], shared_k], dim=2),
            torch.cat([value[targets], shared_v], dim=2),
            attn_mask=torch.cat([own, ref_bias], dim=-1),
            scale=scale,
            **kwargs,
        )
    return output


@contextmanager
def shared_joint_attention(denoiser: torch.nn.Module, setup: JointStyleSetup) -> Iterator[None]:
    """Shares the references' joint attention while ``denoiser`` runs on this thread."""
    weights_zero = math.isclose(float(setup.log_weights.exp().sum()), 0.0, abs_tol=1e-5)
    if setup.strength <= 0 or weights_zero:
        yield
        return
    _install()

    def enter(*_args: Any, **_kwargs: Any) -> None:
        _local.active = setup

    def leave(*_args: Any, **_kwargs: Any) -> None:
        _local.active = None

    before = denoiser.register_forward_pre_hook(enter)
    after = denoiser.register_forward_hook(leave)
    try:
        yield
    finally:
        before.remove()
        after.remove()
        _local.active = None
