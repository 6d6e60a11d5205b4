"""Attention maps: where each word of the prompt landed, recorded while a UNet paints.

For the duration of one pipeline call every cross-attention layer (``attn2``) of the UNet gets a
wrapper around whatever processor is installed there (the default one, a regional-prompt mask,
an IP-Adapter...). The wrapper calls that processor for the layer's output, untouched, and at the
low-resolution layers (a grid of at most ``MAX_QUERIES`` latent pixels: 32x32 or coarser) it also
computes the attention probabilities ``softmax(QK^T / sqrt(d))`` of the conditional half of the
classifier-free-guidance batch, averaged over heads and summed per resolution over layers and
steps. After the call the processors are restored and the sums become one map per image and
text token (coarser grids upsampled to the finest recorded one), then one map per word of the
prompt (the sum of its tokens, special tokens skipped), located through the tokenizer's offsets.

Transformer families (SD3, FLUX, Qwen-Image, Z-Image) are not recorded: their text and image
tokens share one joint attention, whose processors differ per family (rotary embeddings, packed
tokens); ``unavailable_reason`` says so, and the API answers that maps are unavailable.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.engine.families import Family

# Layers whose grid has at most this many latent pixels are recorded (32x32 or coarser).
MAX_QUERIES = 32 * 32
# Characters that make a word; anything else (spaces, commas, brackets) separates words.
_WORD = re.compile(r"[\w'’-]+")


def unavailable_reason(family: Family | None) -> str | None:
    """Why a family's paintings carry no attention maps; None when they do."""
    if family is None or family.denoiser == "unet":
        return None
    return (
        f"attention maps are recorded for UNet models (SD 1.x, 2.x, XL); {family.label} paints with joint "
        "attention, which the studio does not record"
    )


class _Recorder:
    """Sums the cross-attention probabilities of the conditional images, per grid size."""

    def __init__(self, *, width: int, height: int, guided: Callable[[], bool]) -> None:
        self.width, self.height = width, height
        self.guided = guided
        self.sums: dict[int, Any] = {}
        self.counts: dict[int, int] = {}

    def observe(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any) -> None:
        import torch

        if encoder_hidden_states is None or hidden_states.ndim != 3:
            return
        batch, queries, _ = hidden_states.shape
        if queries > MAX_QUERIES:
            return
        # With guidance the batch is [unconditional..., conditional...]; only the prompt's half counts.
        start = batch // 2 if batch % 2 == 0 and self.guided() else 0
        states, context = hidden_states[start:], encoder_hidden_states[start:]
        if attn.group_norm is not None:
            states = attn.group_norm(states.transpose(1, 2)).transpose(1, 2)
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        query, key = attn.to_q(states), attn.to_k(context)
        heads = attn.heads
        head_dim = key.shape[-1] // heads
        query = query.view(query.shape[0], -1, heads, head_dim).transpose(1, 2).float()
        key = key.view(key.shape[0], -1, heads, head_dim).transpose(1, 2).float()
        scores = torch.matmul(query, key.transpose(-1, -2)) * (1.0 / math.sqrt(head_dim))
        probabilities = scores.softmax(dim=-1).mean(dim=1)  # (images, queries, tokens)
        if queries in self.sums and self.sums[queries].shape == probabilities.shape:
            self.sums[queries] += probabilities
            self.counts[queries] += 1
        else:
            self.sums[queries] = probabilities.clone()
            self.counts[queries] = 1

    def _grid(self, queries: int) -> tuple[int, int]:
        rows = max(1, round(math.sqrt(queries * self.height / self.width)))
        columns = max(1, queries // rows)
        if rows * columns != queries:
            raise ValueError(f"cannot lay {queries} latent pixels out as a {self.width}x{self.height} canvas")
        return rows, columns

    def token_maps(self) -> np.ndarray | None:
        """(images, tokens, rows, columns): each token's mean attention over layers, heads and steps."""
        import torch
        import torch.nn.functional as functional

        if not self.sums:
            return None
        finest = max(self.sums)
        rows, columns = self._grid(finest)
        total, calls = None, 0
        for queries, summed in self.sums.items():
            grid = self._grid(queries)
            maps = summed.reshape(summed.shape[0], *grid, summed.shape[-1]).permute(0, 3, 1, 2)
            if grid != (rows, columns):
                # Bilinear upsampling keeps each coarse map's mean, so every layer weighs the same.
                maps = functional.interpolate(maps, size=(rows, columns), mode="bilinear", align_corners=False)
            total = maps if total is None else total + maps
            calls += self.counts[queries]
        assert total is not None
        with torch.no_grad():
            return (total / calls).cpu().numpy().astype(np.float32)


def _recording_processor(inner: Any, recorder: _Recorder) -> Any:
    """A processor calling ``inner`` for the output and showing the recorder its inputs.

    It takes exactly the keyword arguments ``inner`` takes: ``Attention.forward`` reads a
    processor's signature to decide which ``cross_attention_kwargs`` to pass, and must pass
    ``inner`` the same ones as before.
    """

    def call(self: Any, attn: Any, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
        output = inner(attn, hidden_states, *args, **kwargs)
        context = kwargs.get("encoder_hidden_states", args[0] if args else None)
        recorder.observe(attn, hidden_states, context)
        return output

    signature = inspect.signature(inner.__call__)
    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_parameter, *signature.parameters.values()]
    )
    kind = type(f"Recording{type(inner).__name__}", (), {"__call__": call, "inner": inner})
    return kind()


@dataclass
class Recording:
    """What one call recorded: ``token_maps`` per conditional image of the batch, after the call."""

    token_maps: np.ndarray | None = None

    def for_image(self, index: int) -> np.ndarray | None:
        """Image ``index``'s (tokens, rows, columns) maps, None when nothing was recorded for it."""
        if self.token_maps is None or not 0 <= index < self.token_maps.shape[0]:
            return None
        return self.token_maps[index]

    def word_maps(self, tokenizer: Any, prompts: list[str], *, skip: int = 0) -> list[WordMaps | None]:
        """Per image, its prompt's word maps: ``prompts[i]`` painted batch image ``skip + i``.

        ``skip`` leaves out images at the front of the batch that are not outputs (style references).
        A batch of several jobs passes each image's own prompt.
        """
        found: list[WordMaps | None] = []
        for index, prompt in enumerate(prompts):
            maps = self.for_image(skip + index)
            found.append(None if maps is None or tokenizer is None else word_maps(tokenizer, prompt, maps))
        return found


@contextmanager
def recording(pipeline: Any, *, width: int, height: int, enabled: bool = True) -> Iterator[Recording]:
    """Records the UNet's cross-attention while the block runs one call; the processors come back after.

    Enter it innermost, right around the call, so it wraps whatever processors the other
    per-call features (regions, style, adapters) installed. A pipeline without a UNet records nothing.
    """
    result = Recording()
    unet = getattr(pipeline, "unet", None)
    if not enabled or unet is None:
        yield result
        return

    def guided() -> bool:
        return bool(getattr(pipeline, "do_classifier_free_guidance", False))

    recorder = _Recorder(width=width, height=height, guided=guided)
    before = dict(unet.attn_processors)
    unet.set_attn_processor(
        {
            name: _recording_processor(existing, recorder) if name.endswith("attn2.processor") else existing
            for name, existing in before.items()
        }
    )
    try:
        yield result
    finally:
        unet.set_attn_processor(before)
    result.token_maps = recorder.token_maps()


@dataclass(frozen=True)
class WordMaps:
    """One image's map per word of the prompt: ``maps[i]`` is where ``words[i]`` landed.

    ``spans`` are the words' character ranges in ``text`` (the prompt without weighting syntax);
    ``maps`` is (words, rows, columns), each cell the share of that latent pixel's attention the
    word's tokens took, on average over layers, heads and steps.
    """

    text: str
    words: list[str]
    spans: list[tuple[int, int]]
    maps: np.ndarray


def plain_text(prompt: str) -> str:
    """The words a prompt paints, without weighting syntax: ``a (red:1.3) boat`` -> ``a red boat``.

    Of an ``AND`` blend only the first part is kept: its tokens come first in the text sequence.
    """
    from app.engine import prompt_weights

    first = re.split(r"\s+AND\s+", prompt.strip())[0]
    if not prompt_weights.has_weighting(first):
        return first
    text = "".join(chunk for chunk, _weight in prompt_weights.parse_attention(first))
    return re.sub(r"\\([()\[\]])", r"\1", text)


def _token_words(tokenizer: Any, text: str, spans: list[tuple[int, int]]) -> list[int | None]:
    """For each position of the encoded text (special tokens included), the index of its word or None."""

    def word_at(start: int, end: int) -> int | None:
        for index, (word_start, word_end) in enumerate(spans):
            if start < word_end and end > word_start:
                return index
        return None

    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(
            text,
            truncation=True,
            max_length=tokenizer.model_max_length,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        return [
            None if special else word_at(start, end)
            for (start, end), special in zip(encoded["offset_mapping"], encoded["special_tokens_mask"], strict=True)
        ]
    # A slow tokenizer has no offsets: both CLIP's BPE and WordPiece split at spaces and punctuation
    # first, so tokenizing each piece alone gives the whole text's tokens, piece by piece.
    positions: list[int | None] = [None] * (1 if tokenizer.bos_token_id is not None or tokenizer.cls_token else 0)
    for piece in re.finditer(r"\S+", text):
        for part in re.finditer(r"[\w'’-]+|[^\w\s'’-]+", piece.group(0)):
            start = piece.start() + part.start()
            count = len(tokenizer(part.group(0), add_special_tokens=False)["input_ids"])
            positions.extend([word_at(start, start + len(part.group(0)))] * count)
    return positions[: tokenizer.model_max_length - 1]


def word_maps(tokenizer: Any, prompt: str, token_maps: np.ndarray) -> WordMaps:
    """One image's token maps summed per word of ``prompt`` (words cut off by the token limit are left out)."""
    text = plain_text(prompt)
    found = [(match.group(0), match.span()) for match in _WORD.finditer(text)]
    spans = [span for _word, span in found]
    positions = _token_words(tokenizer, text, spans)
    tokens, rows, columns = token_maps.shape
    sums = np.zeros((len(found), rows, columns), dtype=np.float32)
    seen = np.zeros(len(found), dtype=bool)
    for position, word in enumerate(positions):
        if word is not None and position < tokens:
            sums[word] += token_maps[position]
            seen[word] = True
    kept = [index for index in range(len(found)) if seen[index]]
    return WordMaps(
        text=text,
        words=[found[index][0] for index in kept],
        spans=[spans[index] for index in kept],
        maps=sums[kept],
    )
