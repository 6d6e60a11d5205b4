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
Under regional prompts the text sequence is ``[base | regions...]``: the words are the base
prompt's, read from the probabilities before the regions' mask. Of a weighted prompt the words are
its text without the syntax (compel lays their tokens where the plain text's would be).

SD3 and FLUX.1 paint with joint attention: image and text tokens attend to each other in one
sequence. There the wrapped layers are the joint ones (those with text projections), and what is
recorded is the image tokens' queries against the text tokens' keys (rotary embeddings applied as
FLUX applies them), softmax over the text tokens: the cross-attention part of the joint attention.
Their grids are FLUX's and SD3's 2x2 patches; past ``MAX_QUERIES`` patches only every fourth joint
layer is recorded and its maps pooled to 32x32, which bounds the cost. SD3's text sequence starts
with its 77 CLIP tokens, FLUX.1's is T5's, so words are found through those tokenizers. Qwen-Image,
Z-Image and FLUX.2 are not recorded (their text tokens sit behind a chat template or in one merged
sequence); ``unavailable_reason`` says so, and the API answers that maps are unavailable. Nor is a
denoiser the GPU fast path compiled (``STUDIO_COMPILE=1``): swapping its processors on every call
would compile it again on every job.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.engine.families import Family

logger = logging.getLogger(__name__)
# Layers whose grid has at most this many latent pixels are recorded (32x32 or coarser).
MAX_QUERIES = 32 * 32
# Text positions read at most (T5's 512 in FLUX.1; CLIP's 77 elsewhere).
MAX_TOKENS = 512
# Characters that make a word; anything else (spaces, commas, brackets) separates words.
_WORD = re.compile(r"[\w'’-]+")


# Transformer families whose joint attention is recorded, and the tokenizer of their text tokens' start.
JOINT_TOKENIZERS = {"sd3": "tokenizer", "flux": "tokenizer_2", "flux-fill": "tokenizer_2"}
# Past MAX_QUERIES image tokens, a joint layer in this many is recorded.
JOINT_STRIDE = 4


def unavailable_reason(family: Family | None) -> str | None:
    """Why a family's paintings carry no attention maps; None when they do."""
    if family is None or family.denoiser == "unet" or family.name in JOINT_TOKENIZERS:
        return None
    return (
        f"attention maps are recorded for UNet models (SD 1.x, 2.x, XL), SD3 and FLUX.1; {family.label} "
        "keeps its text tokens where the studio does not read them"
    )


class _Recorder:
    """Sums the cross-attention probabilities of the conditional images, per grid size."""

    def __init__(self, *, width: int, height: int, guided: Callable[[], bool]) -> None:
        self.width, self.height = width, height
        self.guided = guided
        self.sums: dict[int, Any] = {}
        self.counts: dict[int, int] = {}
        self.failed = False
        # Joint attention: whether this forward pass of the transformer is the prompt's. FLUX's true
        # CFG runs the negative prompt as a second pass; the first pass of a call is the prompt's.
        self.first_context: Any = None
        self.positive_pass = True

    def forward_starts(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A forward pre-hook on the transformer: tells the prompt's passes by their text embeddings."""
        import torch

        context = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
        if context is None:
            return
        sample = context[:, :8, :8]
        if self.first_context is None:
            self.first_context = sample.clone()
        self.positive_pass = sample.shape == self.first_context.shape and bool(torch.equal(sample, self.first_context))

    def _add(self, probabilities: Any) -> None:
        """Adds one layer's (images, queries, tokens) probabilities to the sums of its grid size."""
        queries = probabilities.shape[1]
        if queries in self.sums and self.sums[queries].shape == probabilities.shape:
            self.sums[queries] += probabilities
            self.counts[queries] += 1
        else:
            self.sums[queries] = probabilities.clone()
            self.counts[queries] = 1

    def observe_joint(self, attn: Any, hidden_states: Any, context: Any, rotary: Any, *, layer: int) -> None:
        """A joint layer: the image tokens' queries against the text tokens' keys."""
        import torch
        import torch.nn.functional as functional

        if context is None or hidden_states.ndim != 3:
            return
        batch, queries, _ = hidden_states.shape
        if not self.positive_pass or (queries > MAX_QUERIES and layer % JOINT_STRIDE):
            return
        start = batch // 2 if batch % 2 == 0 and self.guided() else 0
        states, text = hidden_states[start:], context[start:]
        heads = attn.heads
        query, key = attn.to_q(states), attn.add_k_proj(text)
        head_dim = query.shape[-1] // heads
        query = query.view(query.shape[0], -1, heads, head_dim)
        key = key.view(key.shape[0], -1, heads, head_dim)
        if getattr(attn, "norm_q", None) is not None:
            query = attn.norm_q(query)
        if getattr(attn, "norm_added_k", None) is not None:
            key = attn.norm_added_k(key)
        if rotary is not None:
            from diffusers.models.embeddings import apply_rotary_emb

            # FLUX lays the text first: its rotary rows are [text..., image...].
            tokens = text.shape[1]
            cos, sin = rotary
            query = apply_rotary_emb(query, (cos[tokens:], sin[tokens:]), sequence_dim=1)
            key = apply_rotary_emb(key, (cos[:tokens], sin[:tokens]), sequence_dim=1)
        query, key = query.transpose(1, 2).float(), key.transpose(1, 2).float()
        scores = torch.matmul(query, key.transpose(-1, -2)) * (1.0 / math.sqrt(head_dim))
        probabilities = scores.softmax(dim=-1).mean(dim=1)  # (images, queries, tokens)
        if queries > MAX_QUERIES:
            grid = self._grid(queries)
            if grid is None:
                return
            maps = probabilities.transpose(1, 2).reshape(probabilities.shape[0], -1, *grid)
            factor = math.ceil(math.sqrt(queries / MAX_QUERIES))
            maps = functional.avg_pool2d(maps, kernel_size=factor, ceil_mode=True)
            probabilities = maps.flatten(2).transpose(1, 2)
        self._add(probabilities)

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
        self._add(scores.softmax(dim=-1).mean(dim=1))  # (images, queries, tokens)

    def _grid(self, queries: int) -> tuple[int, int] | None:
        """The queries as rows x columns of the canvas; None when they are no such grid."""
        rows = max(1, round(math.sqrt(queries * self.height / self.width)))
        columns = max(1, queries // rows)
        return (rows, columns) if rows * columns == queries else None

    def token_maps(self) -> np.ndarray | None:
        """(images, tokens, rows, columns): each token's mean attention over layers, heads and steps."""
        import torch
        import torch.nn.functional as functional

        if self.failed:
            return None
        grids = {queries: self._grid(queries) for queries in self.sums}
        laid = [queries for queries, grid in grids.items() if grid is not None]
        if not laid:
            return None
        rows, columns = grids[max(laid)] or (1, 1)
        total, calls = None, 0
        for queries in laid:
            summed, grid = self.sums[queries], grids[queries]
            assert grid is not None
            maps = summed.reshape(summed.shape[0], *grid, summed.shape[-1]).permute(0, 3, 1, 2)
            if grid != (rows, columns):
                # Bilinear upsampling keeps each coarse map's mean, so every layer weighs the same.
                maps = functional.interpolate(maps, size=(rows, columns), mode="bilinear", align_corners=False)
            total = maps if total is None else total + maps
            calls += self.counts[queries]
        assert total is not None
        with torch.no_grad():
            return (total / calls).cpu().numpy().astype(np.float32)


def _recording_processor(inner: Any, recorder: _Recorder, *, joint_layer: int | None = None) -> Any:
    """A processor calling ``inner`` for the output and showing the recorder its inputs.

    It takes exactly the keyword arguments ``inner`` takes: ``Attention.forward`` reads a
    processor's signature to decide which ``cross_attention_kwargs`` to pass, and must pass
    ``inner`` the same ones as before.
    """

    def call(self: Any, attn: Any, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
        output = inner(attn, hidden_states, *args, **kwargs)
        if recorder.failed:
            return output
        context = kwargs.get("encoder_hidden_states", args[0] if args else None)
        try:
            if joint_layer is None:
                recorder.observe(attn, hidden_states, context)
            else:
                rotary = kwargs.get("image_rotary_emb", args[2] if len(args) > 2 else None)
                recorder.observe_joint(attn, hidden_states, context, rotary, layer=joint_layer)
        except Exception:  # the maps are a bonus: a layer they can't read must not fail the painting
            logger.exception("attention maps: stopped recording at a %s layer", type(attn).__name__)
            recorder.failed = True
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
    # The tokenizer whose positions the text tokens follow, when it is not the pipeline's first one.
    tokenizer: Any = None

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
            reader = self.tokenizer if self.tokenizer is not None else tokenizer
            if maps is None or reader is None:
                found.append(None)
                continue
            try:
                found.append(word_maps(reader, prompt, maps))
            except Exception:  # as above: no maps rather than no painting
                logger.exception("attention maps: could not find the words of image %d", index)
                found.append(None)
        return found


@contextmanager
def recording(pipeline: Any, *, width: int, height: int, enabled: bool = True) -> Iterator[Recording]:
    """Records the UNet's cross-attention while the block runs one call; the processors come back after.

    Enter it innermost, right around the call, so it wraps whatever processors the other
    per-call features (regions, style, adapters) installed. A pipeline without a UNet records nothing.
    """
    result = Recording()
    unet = getattr(pipeline, "unet", None)
    family: Family | None = getattr(pipeline, "_studio_family", None)
    joint = family is not None and family.name in JOINT_TOKENIZERS and hasattr(pipeline, "transformer")
    # A denoiser compiled by the GPU fast path (STUDIO_COMPILE=1) is left alone: new processors on
    # every call would make torch.compile guard-fail and compile again on every job.
    compiled = bool(getattr(pipeline, "_studio_compiled", None))
    if not enabled or compiled or (unet is None and not joint):
        yield result
        return

    def guided() -> bool:
        return bool(getattr(pipeline, "do_classifier_free_guidance", False))

    recorder = _Recorder(width=width, height=height, guided=guided)
    model = unet if unet is not None else pipeline.transformer
    before = dict(model.attn_processors)
    wrapped = dict(before)
    if unet is not None:
        for name, existing in before.items():
            if name.endswith("attn2.processor"):
                wrapped[name] = _recording_processor(existing, recorder)
    else:
        assert family is not None
        result.tokenizer = getattr(pipeline, JOINT_TOKENIZERS[family.name], None)
        layer = 0
        for name, existing in before.items():
            module = model.get_submodule(name.removesuffix(".processor"))
            if getattr(module, "add_k_proj", None) is not None:
                wrapped[name] = _recording_processor(existing, recorder, joint_layer=layer)
                layer += 1
    model.set_attn_processor(wrapped)
    hook = model.register_forward_pre_hook(recorder.forward_starts, with_kwargs=True) if unet is None else None
    try:
        yield result
    finally:
        model.set_attn_processor(before)
        if hook is not None:
            hook.remove()
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
            max_length=min(tokenizer.model_max_length, MAX_TOKENS),
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
    return positions[: min(tokenizer.model_max_length, MAX_TOKENS) - 1]


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
