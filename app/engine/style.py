"""Style reference, training-free: shared self-attention with inverted references, as in StyleAligned.

How a reference steers a new image:
1. The reference is encoded and inverted to latents with DDIM, giving its latent at every
   timestep of the schedule.
2. The references ride along in the batch. After every step their latents are reset to the
   inverted trajectory, so their features are those of the reference at that noise level.
3. Every self-attention layer of the UNet lets the new images attend to the references' keys and
   values as well as their own (queries and keys normalised to the references' statistics, the
   AdaIN step of StyleAligned); each reference's share is its weight times ``style_strength``.
4. After every step the per-channel mean and spread of the new latents are pulled towards those of
   the references at the same noise level (AdaIN on latents), which carries the palette.

Everything goes through diffusers' attention-processor interface and the step-end callback, so it
works on any SD or SDXL UNet; the pipeline's own processors are restored afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

_EPS = 1e-5


@dataclass
class StyleReference:
    image: Image.Image
    weight: float = 1.0


@dataclass
class StyleSetup:
    """What one style generation needs at every step."""

    count: int  # references at the front of each half of the batch
    trajectory: dict[int, torch.Tensor]  # timestep -> inverted latents of all references
    clean: torch.Tensor  # the references' clean latents (after the last step)
    latent_mean: dict[int, torch.Tensor]
    latent_std: dict[int, torch.Tensor]
    strength: float


def _channel_stats(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return latents.mean(dim=(-2, -1), keepdim=True), latents.std(dim=(-2, -1), keepdim=True) + _EPS


def _weighted(tensor: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (tensor * weights.view(-1, *([1] * (tensor.ndim - 1)))).sum(dim=0, keepdim=True)


@torch.no_grad()
def encode_images(pipeline: Any, images: list[Image.Image], width: int, height: int) -> torch.Tensor:
    vae = pipeline.vae
    pixels = pipeline.image_processor.preprocess([image.convert("RGB") for image in images], height=height, width=width)
    pixels = pixels.to(device=vae.device, dtype=vae.dtype)
    latents = vae.encode(pixels).latent_dist.mean
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


@torch.no_grad()
def ddim_invert(pipeline: Any, clean: torch.Tensor, timesteps: torch.Tensor) -> dict[int, torch.Tensor]:
    """The latents of ``clean`` at each timestep, walking DDIM backwards with an empty prompt."""
    unet, scheduler = pipeline.unet, pipeline.scheduler
    alphas = scheduler.alphas_cumprod.to(clean.device)
    embeds = _empty_prompt_embeds(pipeline, clean.shape[0], clean.device)
    added = _added_conditions(pipeline, clean.shape[0], clean.shape[-2:], clean.device)
    latents = clean.to(unet.dtype)
    trajectory: dict[int, torch.Tensor] = {}
    previous_alpha = torch.tensor(1.0, device=clean.device)
    for timestep in sorted(int(t) for t in timesteps):
        alpha = alphas[timestep]
        noise = unet(latents, timestep, encoder_hidden_states=embeds, added_cond_kwargs=added).sample
        if scheduler.config.prediction_type == "v_prediction":
            noise = previous_alpha.sqrt() * noise + (1 - previous_alpha).sqrt() * latents
        predicted = (latents - (1 - previous_alpha).sqrt() * noise) / previous_alpha.sqrt()
        latents = alpha.sqrt() * predicted + (1 - alpha).sqrt() * noise
        trajectory[timestep] = latents.clone()
        previous_alpha = alpha
    return trajectory


def _empty_prompt_embeds(pipeline: Any, count: int, device: torch.device) -> torch.Tensor:
    # By keyword: SDXL's encode_prompt takes a second prompt where SD's takes the device.
    encoded = pipeline.encode_prompt("", device=device, num_images_per_prompt=count, do_classifier_free_guidance=False)
    return encoded[0].to(pipeline.unet.dtype)


def _added_conditions(pipeline: Any, count: int, size: torch.Size, device: torch.device) -> dict[str, Any] | None:
    """SDXL's UNet also wants pooled text embeddings and size conditioning."""
    if getattr(pipeline.unet.config, "addition_embed_type", None) != "text_time":
        return None
    encoded = pipeline.encode_prompt("", device=device, num_images_per_prompt=count, do_classifier_free_guidance=False)
    pooled = encoded[2]
    height, width = int(size[0]) * pipeline.vae_scale_factor, int(size[1]) * pipeline.vae_scale_factor
    time_ids = torch.tensor([[height, width, 0, 0, height, width]], device=device, dtype=pooled.dtype).repeat(count, 1)
    return {"text_embeds": pooled, "time_ids": time_ids}


def prepare(
    pipeline: Any,
    references: list[StyleReference],
    *,
    width: int,
    height: int,
    steps: int,
    strength: float,
    device: str,
) -> StyleSetup:
    """Inverts the references over the schedule the pipeline is about to run."""
    pipeline.scheduler.set_timesteps(steps, device=device)
    clean = encode_images(pipeline, [reference.image for reference in references], width, height)
    trajectory = ddim_invert(pipeline, clean, pipeline.scheduler.timesteps)
    weights = torch.tensor([max(reference.weight, 0.0) for reference in references], device=clean.device)
    weights = weights / weights.sum().clamp_min(_EPS)
    means, stds = {}, {}
    for timestep, latents in trajectory.items():
        mean, std = _channel_stats(latents.float())
        means[timestep], stds[timestep] = _weighted(mean, weights), _weighted(std, weights)
    clean_mean, clean_std = _channel_stats(clean.float())
    means[-1], stds[-1] = _weighted(clean_mean, weights), _weighted(clean_std, weights)
    return StyleSetup(
        count=len(references),
        trajectory=trajectory,
        clean=clean,
        latent_mean=means,
        latent_std=stds,
        strength=strength,
    )


def step_end(setup: StyleSetup, pipeline: Any, timestep: int, latents: torch.Tensor) -> torch.Tensor:
    """After the step at ``timestep``: put the references back on their trajectory, pull the palette."""
    # The full schedule, even when image-to-image runs only its tail.
    timesteps = [int(t) for t in pipeline.scheduler.timesteps]
    position = timesteps.index(int(timestep))
    following = timesteps[position + 1] if position + 1 < len(timesteps) else -1
    references = setup.trajectory[following] if following >= 0 else setup.clean
    latents = latents.clone()
    latents[: setup.count] = references.to(latents.dtype)
    if setup.strength > 0:
        targets = latents[setup.count :].float()
        mean, std = _channel_stats(targets)
        matched = (targets - mean) / std * setup.latent_std[following] + setup.latent_mean[following]
        latents[setup.count :] = (targets + setup.strength * (matched - targets)).to(latents.dtype)
    return latents


class SharedAttentionProcessor:
    """Self-attention where generated images also attend to the references' keys and values.

    The batch is laid out as ``[references, targets]`` (twice with classifier-free guidance);
    references attend only to themselves, so their features stay the reference's own.
    """

    def __init__(self, count: int, log_weights: torch.Tensor, groups: int, normalise: bool = True) -> None:
        self.count = count
        self.log_weights = log_weights  # one per reference: log(weight * strength)
        self.groups = groups  # 2 with classifier-free guidance: [uncond half, cond half]
        self.normalise = normalise

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        batch, tokens, _ = hidden_states.shape
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads

        def heads(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.view(tensor.shape[0], -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = heads(query), heads(key), heads(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        output = torch.empty_like(query)
        group = batch // self.groups
        for start in range(0, batch, group):
            output[start : start + group] = self._group(
                query[start : start + group], key[start : start + group], value[start : start + group]
            )

        hidden_states = output.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor

    def _group(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        count = self.count
        ref_q, ref_k, ref_v = query[:count], key[:count], value[:count]
        out_refs = F.scaled_dot_product_attention(ref_q, ref_k, ref_v)
        targets = query.shape[0] - count
        if targets <= 0:
            return out_refs
        q, k, v = query[count:], key[count:], value[count:]
        if self.normalise:
            q = _adain_tokens(q, ref_q)
            k = _adain_tokens(k, ref_k)
        tokens = k.shape[2]
        # Keys: the target's own, then every reference's, each reference biased by its log-weight.
        shared_k = ref_k.transpose(0, 1).reshape(1, ref_k.shape[1], -1, ref_k.shape[-1]).expand(targets, -1, -1, -1)
        shared_v = ref_v.transpose(0, 1).reshape(1, ref_v.shape[1], -1, ref_v.shape[-1]).expand(targets, -1, -1, -1)
        all_k = torch.cat([k, shared_k], dim=2)
        all_v = torch.cat([v, shared_v], dim=2)
        ref_tokens = ref_k.shape[2]
        bias = torch.cat(
            [
                torch.zeros(tokens, device=q.device, dtype=q.dtype),
                self.log_weights.to(q.device, q.dtype).repeat_interleave(ref_tokens),
            ]
        )
        out_targets = F.scaled_dot_product_attention(q, all_k, all_v, attn_mask=bias.view(1, 1, 1, -1))
        return torch.cat([out_refs, out_targets], dim=0)


def _adain_tokens(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Normalises each channel of ``features`` over its tokens to the references' mean and spread."""
    mean, std = features.mean(dim=2, keepdim=True), features.std(dim=2, keepdim=True) + _EPS
    ref_mean = reference.mean(dim=(0, 2), keepdim=True)
    ref_std = reference.std(dim=2, keepdim=True).mean(dim=0, keepdim=True) + _EPS
    return (features - mean) / std * ref_std + ref_mean


@contextmanager
def shared_attention(unet: Any, references: list[StyleReference], strength: float, *, groups: int) -> Iterator[None]:
    """Installs shared attention on every self-attention layer, restoring the originals after."""
    original = dict(unet.attn_processors)
    weights = torch.tensor([max(reference.weight, 0.0) * strength for reference in references])
    log_weights = torch.log(weights.clamp_min(1e-6))
    if strength <= 0 or math.isclose(float(weights.sum()), 0.0):
        yield
        return
    processor = SharedAttentionProcessor(len(references), log_weights, groups)
    processors = {name: processor if ".attn1." in name else current for name, current in original.items()}
    unet.set_attn_processor(processors)
    try:
        yield
    finally:
        unet.set_attn_processor(original)
