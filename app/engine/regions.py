"""Regional prompts: a prompt per box or mask of the canvas, by masking the UNet's cross-attention.

The base prompt and every region's prompt are encoded separately and laid side by side in one
text sequence. While the call runs, each cross-attention layer of the UNet gets a processor
whose attention bias lets a latent pixel see the base prompt's tokens everywhere and a region's
tokens only inside that region (its box, or the white part of its mask, taken at the layer's own
resolution), with ``log(weight)`` added so a weight above 1 pulls harder. The negative prompt is
repeated to the same length, so classifier-free guidance pairs them as usual. SDXL's two text
encoders are concatenated per prompt by its own ``encode_prompt``; its pooled embedding (the
size-and-style conditioning) is the base prompt's. The processors are restored after the call.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from app.engine import prompt_weights

# How much a latent pixel inside a box still listens to the base prompt, against its region's prompt.
BASE_SHARE = 0.2


@dataclass(frozen=True)
class RegionPrompt:
    """A prompt painted inside ``box`` (fractions of the canvas: x0, y0, x1, y1) or inside the white
    part of ``mask`` (a PIL image in mode "L", stretched over the canvas), at ``weight``."""

    prompt: str
    box: tuple[float, float, float, float] | None = None
    weight: float = 1.0
    mask: Any = None

    def __post_init__(self) -> None:
        if (self.box is None) == (self.mask is None):
            raise ValueError("a region has exactly one of a box and a mask")


def _cells(box: tuple[float, float, float, float], rows: int, columns: int) -> tuple[int, int, int, int]:
    """The box in a rows x columns grid, at least one cell: (top, bottom, left, right), ends exclusive."""
    x0, y0, x1, y1 = box
    top, left = min(rows - 1, math.floor(y0 * rows)), min(columns - 1, math.floor(x0 * columns))
    return top, max(top + 1, math.ceil(y1 * rows)), left, max(left + 1, math.ceil(x1 * columns))


def region_cells(region: RegionPrompt, rows: int, columns: int) -> Any:
    """The (rows, columns) cells a region covers: its box, or where its mask is mostly white.

    A mask is averaged over each cell (area resampling), so a thin stroke shows at fine layers and
    fades at coarse ones; a mask too small for any cell at this resolution keeps its whitest one.
    """
    import torch

    inside = torch.zeros(rows, columns, dtype=torch.bool)
    if region.box is not None:
        top, bottom, left, right = _cells(region.box, rows, columns)
        inside[top:bottom, left:right] = True
        return inside
    import numpy as np
    import torch.nn.functional as functional

    pixels = torch.from_numpy(np.asarray(region.mask.convert("L"), dtype=np.float32) / 255.0)
    share = functional.interpolate(pixels[None, None], size=(rows, columns), mode="area")[0, 0]
    inside = share >= 0.5
    if not inside.any():
        inside.view(-1)[int(share.argmax())] = True
    return inside


def attention_bias(
    regions: Sequence[RegionPrompt],
    *,
    tokens: int | Sequence[int],
    queries: int,
    width: int,
    height: int,
    dtype: Any,
    device: Any,
) -> Any:
    """The (queries, all tokens) bias: 0 for the base prompt, log(weight) inside a region, -inf outside.

    ``tokens`` is each prompt's length, base first (one number when they are all as long): a weighted
    prompt's ``AND`` blend or a long prompt is longer than the 77 tokens of a plain one.
    """
    import torch

    rows = max(1, round(math.sqrt(queries * height / width)))
    columns = max(1, queries // rows)
    if rows * columns != queries:
        raise ValueError(f"cannot lay {queries} latent pixels out as a {width}x{height} canvas")
    lengths = [tokens] * (1 + len(regions)) if isinstance(tokens, int) else list(tokens)
    if len(lengths) != 1 + len(regions):
        raise ValueError(f"{len(lengths)} prompt lengths for a base prompt and {len(regions)} regions")
    starts = [sum(lengths[:index]) for index in range(len(lengths) + 1)]
    bias = torch.zeros(rows, columns, starts[-1], dtype=torch.float32)
    covered = torch.zeros(rows, columns, dtype=torch.bool)
    for index, region in enumerate(regions, start=1):
        cells = region_cells(region, rows, columns)
        inside = torch.where(cells, math.log(region.weight), float("-inf"))
        covered |= cells
        bias[:, :, starts[index] : starts[index + 1]] = inside[:, :, None]
    # Inside a box the base prompt only sets the scene: its tokens count BASE_SHARE as much as the region's.
    bias[:, :, : lengths[0]] = torch.where(covered, math.log(BASE_SHARE), 0.0)[:, :, None]
    return bias.reshape(queries, -1).to(device=device, dtype=dtype)


class RegionalCrossAttention:
    """A cross-attention processor applying the regions' bias; self-attention is left to others."""

    def __init__(self, regions: Sequence[RegionPrompt], *, tokens: Sequence[int], width: int, height: int) -> None:
        self.regions = list(regions)
        self.tokens, self.width, self.height = tokens, width, height
        self._bias: dict[tuple[int, Any, Any], Any] = {}

    def __call__(
        self,
        attn: Any,
        hidden_states: Any,
        encoder_hidden_states: Any = None,
        attention_mask: Any = None,
        temb: Any = None,
        **_: Any,
    ) -> Any:
        import torch.nn.functional as functional

        if encoder_hidden_states is None:
            raise ValueError("regional prompts reach cross-attention only")
        batch, queries, _channels = hidden_states.shape
        key_of = (queries, hidden_states.dtype, hidden_states.device)
        if key_of not in self._bias:
            self._bias[key_of] = attention_bias(
                self.regions,
                tokens=self.tokens,
                queries=queries,
                width=self.width,
                height=self.height,
                dtype=hidden_states.dtype,
                device=hidden_states.device,
            )
        bias = self._bias[key_of]
        query = attn.to_q(hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (
            tensor.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for tensor in (query, key, value)
        )
        out = functional.scaled_dot_product_attention(query, key, value, attn_mask=bias[None, None])
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


@dataclass(frozen=True)
class _Encoded:
    """A prompt's embeddings; SDXL adds its pooled embedding (and the negative prompt's)."""

    embeds: Any
    negative: Any = None
    pooled: Any = None
    negative_pooled: Any = None


def _encode(pipeline: Any, text: str, negative: str | None = None) -> _Encoded:
    """``text`` encoded as the pipeline encodes a prompt (with ``negative`` as its negative when given).

    Weighting syntax (``(word:1.3)``, ``AND``, ...) goes through compel, as a prompt without regions
    does (app.engine.prompt_weights), on families that read it. Otherwise keyword arguments, since
    SD's and SDXL's ``encode_prompt`` order them differently; SDXL's answers four tensors (prompt,
    negative, pooled, negative pooled), SD's two.
    """
    family = getattr(pipeline, "_studio_family", None)
    weighted = prompt_weights.has_weighting(text) or prompt_weights.has_weighting(negative or "")
    if family is not None and family.capabilities.weighted_prompts and weighted:
        made = prompt_weights.embeddings(pipeline, family, text, negative or "")
        return _Encoded(
            made["prompt_embeds"],
            made["negative_prompt_embeds"],
            made.get("pooled_prompt_embeds"),
            made.get("negative_pooled_prompt_embeds"),
        )
    device = getattr(pipeline, "_execution_device", None) or pipeline.unet.device
    out = pipeline.encode_prompt(
        prompt=text,
        device=device,
        num_images_per_prompt=1,
        do_classifier_free_guidance=negative is not None,
        negative_prompt=negative or None,
    )
    if len(out) == 4:
        return _Encoded(out[0], out[1], out[2], out[3])
    return _Encoded(out[0], out[1])


@contextmanager
def applied(
    pipeline: Any, regions: Sequence[RegionPrompt], arguments: dict[str, Any], *, width: int, height: int
) -> Iterator[None]:
    """The call's prompt replaced by [base | regions...] embeddings and the UNet's cross-attention
    masked per region for the block; the UNet's processors are restored after."""
    if not regions:
        yield
        return
    prompt, negative = arguments.get("prompt"), arguments.get("negative_prompt") or ""
    if not isinstance(prompt, str) or not isinstance(negative, str) or not hasattr(pipeline, "unet"):
        raise ValueError("regional prompts paint a UNet model's prompt job (not style references)")
    import torch

    # 1. the base prompt with its negative, then each region's prompt alone
    base = _encode(pipeline, prompt, negative)
    parts = [base.embeds, *(_encode(pipeline, region.prompt).embeds for region in regions)]
    lengths = [int(part.shape[1]) for part in parts]
    # The negative prompt, repeated to the same length, pairs with them for classifier-free guidance.
    repeats = -(-sum(lengths) // int(base.negative.shape[1]))
    arguments.pop("prompt", None)
    arguments.pop("negative_prompt", None)
    arguments.update(
        prompt_embeds=torch.cat(parts, dim=1),
        negative_prompt_embeds=base.negative.repeat(1, repeats, 1)[:, : sum(lengths)],
    )
    if base.pooled is not None:
        # SDXL: the pooled embedding conditions the whole picture; the base prompt's sets it.
        arguments.update(pooled_prompt_embeds=base.pooled, negative_pooled_prompt_embeds=base.negative_pooled)

    # 2. every cross-attention layer (attn2) masked per region; self-attention left as it was
    unet = pipeline.unet
    before = dict(unet.attn_processors)
    processor = RegionalCrossAttention(regions, tokens=lengths, width=width, height=height)
    unet.set_attn_processor(
        {name: processor if name.endswith("attn2.processor") else existing for name, existing in before.items()}
    )
    try:
        yield
    finally:
        unet.set_attn_processor(before)
