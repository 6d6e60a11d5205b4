"""Regional prompts: a prompt per box of the canvas, by masking the UNet's cross-attention.

The base prompt and every region's prompt are encoded separately and laid side by side in one
text sequence. While the call runs, each cross-attention layer of the UNet gets a processor
whose attention bias lets a latent pixel see the base prompt's tokens everywhere and a region's
tokens only inside that region's box (at the layer's own resolution), with ``log(weight)`` added
so a weight above 1 pulls harder. The negative prompt is repeated to the same length, so
classifier-free guidance pairs them as usual. The processors are restored after the call.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# How much a latent pixel inside a box still listens to the base prompt, against its region's prompt.
BASE_SHARE = 0.2


@dataclass(frozen=True)
class RegionPrompt:
    """A prompt painted inside ``box`` (fractions of the canvas: x0, y0, x1, y1), at ``weight``."""

    prompt: str
    box: tuple[float, float, float, float]
    weight: float = 1.0


def _cells(box: tuple[float, float, float, float], rows: int, columns: int) -> tuple[int, int, int, int]:
    """The box in a rows x columns grid, at least one cell: (top, bottom, left, right), ends exclusive."""
    x0, y0, x1, y1 = box
    top, left = min(rows - 1, math.floor(y0 * rows)), min(columns - 1, math.floor(x0 * columns))
    return top, max(top + 1, math.ceil(y1 * rows)), left, max(left + 1, math.ceil(x1 * columns))


def attention_bias(
    regions: Sequence[RegionPrompt], *, tokens: int, queries: int, width: int, height: int, dtype: Any, device: Any
) -> Any:
    """The (queries, tokens x (1 + regions)) bias: 0 for the base prompt, log(weight) inside a box, -inf outside."""
    import torch

    rows = max(1, round(math.sqrt(queries * height / width)))
    columns = max(1, queries // rows)
    if rows * columns != queries:
        raise ValueError(f"cannot lay {queries} latent pixels out as a {width}x{height} canvas")
    bias = torch.zeros(rows, columns, tokens * (1 + len(regions)), dtype=torch.float32)
    covered = torch.zeros(rows, columns, dtype=torch.bool)
    for index, region in enumerate(regions, start=1):
        inside = torch.full((rows, columns), float("-inf"))
        top, bottom, left, right = _cells(region.box, rows, columns)
        inside[top:bottom, left:right] = math.log(region.weight)
        covered[top:bottom, left:right] = True
        bias[:, :, index * tokens : (index + 1) * tokens] = inside[:, :, None]
    # Inside a box the base prompt only sets the scene: its tokens count BASE_SHARE as much as the region's.
    bias[:, :, :tokens] = torch.where(covered, math.log(BASE_SHARE), 0.0)[:, :, None]
    return bias.reshape(queries, -1).to(device=device, dtype=dtype)


class RegionalCrossAttention:
    """A cross-attention processor applying the regions' bias; self-attention is left to others."""

    def __init__(self, regions: Sequence[RegionPrompt], *, tokens: int, width: int, height: int) -> None:
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


def _encode(pipeline: Any, text: str) -> Any:
    embeds, _ = pipeline.encode_prompt(text, pipeline.unet.device, 1, False)
    return embeds


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
    base = _encode(pipeline, prompt)
    import torch

    positive = torch.cat([base, *(_encode(pipeline, region.prompt) for region in regions)], dim=1)
    negative_embeds = _encode(pipeline, negative).repeat(1, 1 + len(regions), 1)
    arguments.pop("prompt", None)
    arguments.pop("negative_prompt", None)
    arguments.update(prompt_embeds=positive, negative_prompt_embeds=negative_embeds)
    unet = pipeline.unet
    before = dict(unet.attn_processors)
    processor = RegionalCrossAttention(regions, tokens=base.shape[1], width=width, height=height)
    unet.set_attn_processor(
        {name: processor if name.endswith("attn2.processor") else existing for name, existing in before.items()}
    )
    try:
        yield
    finally:
        unet.set_attn_processor(before)
