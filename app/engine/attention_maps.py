"""Attention maps: where each word of the prompt landed, recorded while a UNet or a transformer paints.

For the duration of one pipeline call every cross-attention layer (``attn2``) of the UNet gets a
wrapper around whatever processor is installed there (the default one, a regional-prompt mask,
an IP-Adapter...). The wrapper calls that processor for the layer's output, untouched, and at the
low-resolution layers (a grid of at most ``MAX_QUERIES`` latent pixels: 32x32 or coarser) it also
computes the attention probabilities ``softmax(QK^T / sqrt(d))`` of the conditional half of the
classifier-free-guidance batch, averaged over heads and summed per resolution over layers and
steps (at every other denoising step, and at most ``UNET_READ_STEPS`` spread over a long schedule:
``unet_stride``). After the call the processors are
restored and the sums become one map per image and text token (coarser grids upsampled to the
finest recorded one), then one map per word of the prompt (app.engine.attention_words). Under
regional prompts the text sequence is ``[base | regions...]``: the words are the base prompt's,
read from the probabilities before the regions' mask. Of a weighted prompt the words are its text
without the syntax (compel lays their tokens where the plain text's would be). Under an IP-Adapter
the wrapped processor is the adapter's (the recorder is entered after the adapter is loaded), and
what is recorded is the text part of its attention: the image prompt's tokens are attended
separately and are no word.

The transformer families paint with joint attention: image and text tokens attend to each other
in one sequence. What is recorded there is the image tokens' queries against the text tokens'
keys, with each family's query/key norms and rotary embeddings, softmax over the text tokens: the
cross-attention part of the joint attention.

- SD3, FLUX.1, FLUX.2 and Qwen-Image have double-stream layers (with text projections
  ``add_k_proj``): the image stream's queries meet the text stream's projected keys. FLUX lays
  the text first in its rotary rows; Qwen-Image rotates each stream by its own (complex)
  frequencies and masks the text padding of a batch.
- Z-Image is single-stream: its main layers (``layers.N``) see one sequence per image,
  ``[image tokens, padding | caption tokens, padding]`` (each padded to 32), so a pre-hook on the
  transformer reads each item's image and caption lengths and the queries and keys are sliced
  from the same projections.

Their grids are the 2x2 patches; past ``MAX_QUERIES`` patches only every fourth joint layer is
recorded and its maps pooled to 32x32, which bounds the cost. A guided batch holds the prompt's
images in its second half (SD3, UNets) or its first (Z-Image); FLUX.1, FLUX.2 [klein] and
Qwen-Image run the negative prompt as a pass of its own, told apart by its text embeddings and
left out. The condition image tokens FLUX.2 [klein] inpainting appends to the image stream are no
part of the canvas and are left out. Not recorded: a denoiser the GPU fast path compiled
(``STUDIO_COMPILE=1``): swapping its processors on every call would compile it again on every job.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.engine import attention_joint
from app.engine.attention_words import WordMaps, plain_text, text_reader, word_maps
from app.engine.families import Family

__all__ = ["Recording", "WordMaps", "plain_text", "recording", "unavailable_reason", "word_maps"]

logger = logging.getLogger(__name__)
# Layers whose grid has at most this many latent pixels are recorded (32x32 or coarser).
MAX_QUERIES = 32 * 32
# A UNet's maps are read at one denoising step in this many (the first, third, ...): the layout
# the words land on changes little from one step to the next, and each read step costs a query
# and key projection and a softmax per recorded layer. A long schedule is read at most
# UNET_READ_STEPS times, spread over it (every fourth of 20 steps, every tenth of 50).
UNET_STEP_STRIDE = 2
UNET_READ_STEPS = 5


def unet_stride(steps: int | None) -> int:
    """One denoising step in how many a UNet's maps are read, for a call of ``steps`` steps."""
    if not steps or steps <= 0:
        return UNET_STEP_STRIDE
    return max(UNET_STEP_STRIDE, math.ceil(steps / UNET_READ_STEPS))


# Transformer families whose joint attention is recorded, and how a layer's queries and keys are read.
JOINT_READERS = {
    "sd3": "flux",
    "flux": "flux",
    "flux-fill": "flux",
    "flux2": "flux",
    "qwenimage": "qwen",
    "zimage": "zimage",
}
# Where the text sequence is the prompt's own tokens: the tokenizer of its start. The other joint
# families render the prompt into a chat template (app.engine.attention_words.TemplatedText).
JOINT_TOKENIZERS = {"sd3": "tokenizer", "flux": "tokenizer_2", "flux-fill": "tokenizer_2"}
# Where a guided batch keeps the prompt's images; families not named run the negative prompt as its own pass.
GUIDED_HALF = {"sd3": "second", "zimage": "first"}
# Past MAX_QUERIES image tokens, a joint layer in this many is recorded.
JOINT_STRIDE = 4


def unavailable_reason(family: Family | None) -> str | None:
    """Why a family's paintings carry no attention maps; None when they do."""
    if family is None or family.denoiser == "unet" or family.name in JOINT_READERS:
        return None
    return f"attention maps are not recorded for {family.label}: the studio does not read its text tokens"


class _Recorder:
    """Sums the cross-attention probabilities of the conditional images, per grid size."""

    def __init__(
        self,
        *,
        width: int,
        height: int,
        guided: Callable[[], bool],
        half: str | None = "second",
        reader: str = "flux",
        image_tokens: int | None = None,
        stride: int = UNET_STEP_STRIDE,
    ) -> None:
        self.width, self.height = width, height
        self.guided = guided
        self.half = half
        self.reader = reader
        # FLUX.2 [klein] inpainting appends condition tokens to the image stream: the canvas's come first.
        self.image_tokens = image_tokens
        self.sums: dict[int, Any] = {}
        self.counts: dict[int, int] = {}
        self.failed = False
        # Joint attention: whether this forward pass of the transformer is the prompt's. FLUX's true
        # CFG runs the negative prompt as a second pass; the first pass of a call is the prompt's.
        self.first_context: Any = None
        self.positive_pass = True
        # Z-Image: per item of the batch, (image tokens, image tokens padded, caption tokens).
        self.layout: list[tuple[int, int, int]] | None = None
        # Whether this denoising step is read (a UNet's are read one in ``stride``).
        self.stride = stride
        self.active = True
        self.steps = 0
        self.last_timestep: Any = None

    def unet_starts(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A forward pre-hook on the UNet: counts denoising steps by their timestep, reads one in ``stride``.

        The timestep, not the forward call, is counted, so that a step calling the UNet more than
        once (for each half of the guidance apart) is read or skipped as a whole.
        """
        timestep: Any = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        try:
            value = float(timestep.flatten()[0]) if hasattr(timestep, "flatten") else float(timestep)
        except (TypeError, ValueError, IndexError):
            self.active = True  # a step it cannot tell: read it
            return
        if value != self.last_timestep:
            self.last_timestep = value
            self.active = self.steps % self.stride == 0
            self.steps += 1

    def _rows(self, batch: int) -> slice:
        """The conditional images of a batch: its second half (UNets, SD3) or first (Z-Image) when guided."""
        if self.half is None or batch % 2 or not self.guided():
            return slice(0, batch)
        return slice(batch // 2, batch) if self.half == "second" else slice(0, batch // 2)

    def forward_starts(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A forward pre-hook on the transformer: tells the prompt's passes by their text embeddings.

        The whole embeddings are compared: a chat template's tokens come first, and a causal text
        encoder gives the prompt and the negative prompt the same embeddings there.
        """
        import torch

        context = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
        if context is None:
            return
        if self.first_context is None:
            self.first_context = context.detach().clone()
        first = self.first_context
        self.positive_pass = context.shape == first.shape and bool(torch.equal(context, first))

    def sequence_starts(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A forward pre-hook on Z-Image's transformer: where each item's image and caption tokens lie."""
        from diffusers.models.transformers.transformer_z_image import SEQ_MULTI_OF

        latents = kwargs.get("x", args[0] if args else None)
        captions = kwargs.get("cap_feats", args[2] if len(args) > 2 else None)
        patch, frames = int(kwargs.get("patch_size", 2)), int(kwargs.get("f_patch_size", 1))
        self.layout = None
        if not isinstance(latents, list) or not isinstance(captions, list) or len(latents) != len(captions):
            return
        if any(isinstance(item, list) for item in (*latents, *captions)):
            return  # the omni layout (condition images in the sequence) is not read
        layout = []
        for latent, caption in zip(latents, captions, strict=True):
            _channels, depth, rows, columns = latent.shape
            tokens = (depth // frames) * (rows // patch) * (columns // patch)
            layout.append((tokens, tokens + (-tokens) % SEQ_MULTI_OF, int(caption.shape[0])))
        self.layout = layout

    def _add(self, probabilities: Any) -> None:
        """Adds one layer's (images, queries, tokens) probabilities to the sums of its grid size."""
        queries = probabilities.shape[1]
        if queries in self.sums and self.sums[queries].shape == probabilities.shape:
            self.sums[queries] += probabilities
            self.counts[queries] += 1
        else:
            self.sums[queries] = probabilities.clone()
            self.counts[queries] = 1

    def observe_joint(self, attn: Any, hidden_states: Any, arguments: dict[str, Any], *, layer: int) -> None:
        """A joint layer: the image tokens' queries against the text tokens' keys."""
        import torch.nn.functional as functional

        if hidden_states.ndim != 3 or not self.positive_pass:
            return
        layout = self.layout
        if self.reader == "zimage":
            if layout is None or len(layout) != hidden_states.shape[0]:
                return
            queries = layout[0][0]
        else:
            queries = hidden_states.shape[1]
            if self.image_tokens is not None and queries > self.image_tokens:
                queries = self.image_tokens
        if queries > MAX_QUERIES and layer % JOINT_STRIDE:
            return
        rows = self._rows(hidden_states.shape[0])
        if layout is not None and self.reader == "zimage":
            probabilities = attention_joint.zimage(attn, hidden_states, arguments, rows, layout)
        elif self.reader == "qwen":
            probabilities = attention_joint.qwen(attn, hidden_states[rows], arguments, rows)
        else:
            probabilities = attention_joint.flux(attn, hidden_states[rows, :queries], arguments, rows)
        if probabilities is None:
            return
        if queries > MAX_QUERIES:
            grid = self._grid(queries)
            if grid is None:
                return
            maps = probabilities.transpose(1, 2).reshape(probabilities.shape[0], -1, *grid)
            factor = math.ceil(math.sqrt(queries / MAX_QUERIES))
            maps = functional.avg_pool2d(maps, kernel_size=factor, ceil_mode=True)
            probabilities = maps.flatten(2).transpose(1, 2)
        self._add(probabilities)

    def observe(self, attn: Any, hidden_states: Any, arguments: dict[str, Any]) -> None:
        """A UNet cross-attention layer (under an IP-Adapter, the text part of its context)."""
        context = arguments.get("encoder_hidden_states")
        if isinstance(context, tuple):
            context = context[0]  # IP-Adapter: (text, image prompt embeddings)
        if context is None or hidden_states.ndim != 3:
            return
        queries = hidden_states.shape[1]
        if queries > MAX_QUERIES:
            return
        # With guidance the batch is [unconditional..., conditional...]; only the prompt's half counts.
        rows = self._rows(hidden_states.shape[0])
        states, context = hidden_states[rows], context[rows]
        if attn.group_norm is not None:
            states = attn.group_norm(states.transpose(1, 2)).transpose(1, 2)
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        query, key = attn.to_q(states), attn.to_k(context)
        heads = attn.heads
        head_dim = key.shape[-1] // heads
        query = query.view(query.shape[0], -1, heads, head_dim)
        key = key.view(key.shape[0], -1, heads, head_dim)
        self._add(attention_joint.attend(query, key))  # (images, queries, tokens)

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


def _named(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A processor call's arguments by parameter name, however they were passed."""
    bound = signature.bind(*args, **kwargs).arguments
    named = dict(bound)
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            named.update(named.pop(parameter.name, {}))
    return named


# A processor class's call signature (read once per class: inspect.signature is slow on every call).
_SIGNATURES: dict[type, inspect.Signature] = {}


def _recording_processor(inner: Any, recorder: _Recorder, *, joint_layer: int | None = None) -> Any:
    """A processor calling ``inner`` for the output and showing the recorder its inputs.

    It takes exactly the keyword arguments ``inner`` takes: ``Attention.forward`` reads a
    processor's signature to decide which ``cross_attention_kwargs`` to pass, and must pass
    ``inner`` the same ones as before.
    """
    signature = _SIGNATURES.get(type(inner))
    if signature is None:
        signature = _SIGNATURES[type(inner)] = inspect.signature(inner.__call__)

    def call(self: Any, attn: Any, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
        output = inner(attn, hidden_states, *args, **kwargs)
        if recorder.failed or not recorder.active:
            return output
        try:
            # Attention.forward passes all but the first two by name: binding them is only needed otherwise.
            arguments = kwargs if not args else _named(signature, (attn, hidden_states, *args), kwargs)
            if joint_layer is None:
                recorder.observe(attn, hidden_states, arguments)
            else:
                recorder.observe_joint(attn, hidden_states, arguments, layer=joint_layer)
        except Exception:  # the maps are a bonus: a layer they can't read must not fail the painting
            logger.exception("attention maps: stopped recording at a %s layer", type(attn).__name__)
            recorder.failed = True
        return output

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
    # What places the words in the text sequence when it is not the pipeline's first tokenizer: another
    # tokenizer (SD3's CLIP-L, FLUX.1's T5) or a chat template (Qwen-Image, Z-Image, FLUX.2).
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


def _processors(model: Any) -> dict[str, Any]:
    """The denoiser's attention processors by name (Z-Image's transformer does not list them itself)."""
    if hasattr(model, "attn_processors"):
        return dict(model.attn_processors)
    return {
        f"{name}.processor": module.processor
        for name, module in model.named_modules()
        if hasattr(module, "processor") and hasattr(module, "set_processor")
    }


def _install(model: Any, processors: dict[str, Any]) -> None:
    if hasattr(model, "set_attn_processor"):
        model.set_attn_processor(processors)
        return
    for name, processor in processors.items():
        model.get_submodule(name.removesuffix(".processor")).set_processor(processor)


def _joint_layers(model: Any, reader: str, processors: dict[str, Any]) -> list[str]:
    """The processor names of the joint layers, in order: double-stream ones, or Z-Image's main layers."""
    names = []
    for name in processors:
        module = model.get_submodule(name.removesuffix(".processor"))
        if reader == "zimage":
            if name.startswith("layers.") and getattr(module, "to_k", None) is not None:
                names.append(name)
        elif getattr(module, "add_k_proj", None) is not None:
            names.append(name)
    return names


@contextmanager
def recording(
    pipeline: Any, *, width: int, height: int, enabled: bool = True, steps: int | None = None
) -> Iterator[Recording]:
    """Records the denoiser's cross-attention while the block runs one call; the processors come back after.

    ``steps``, the call's denoising steps, spreads a UNet's read steps over the schedule (``unet_stride``).

    Enter it innermost, right around the call (after an IP-Adapter is loaded), so it wraps whatever
    processors the other per-call features (regions, style, adapters) installed. A pipeline
    without a UNet or a recorded transformer family records nothing.
    """
    result = Recording()
    unet = getattr(pipeline, "unet", None)
    family: Family | None = getattr(pipeline, "_studio_family", None)
    reader = JOINT_READERS.get(family.name) if family is not None else None
    joint = reader is not None and hasattr(pipeline, "transformer")
    # A denoiser compiled by the GPU fast path (STUDIO_COMPILE=1) is left alone: new processors on
    # every call would make torch.compile guard-fail and compile again on every job.
    compiled = bool(getattr(pipeline, "_studio_compiled", None))
    if not enabled or compiled or (unet is None and not joint):
        yield result
        return

    def guided() -> bool:
        return bool(getattr(pipeline, "do_classifier_free_guidance", False))

    if unet is not None:
        recorder = _Recorder(width=width, height=height, guided=guided, stride=unet_stride(steps))
        # Only the cross-attention layers are swapped, module by module: setting all of the UNet's
        # processors (set_attn_processor) before and after every call cost more than the reading.
        layers = [module for name, module in unet.named_modules() if name.endswith("attn2")]
        layers = [module for module in layers if hasattr(module, "set_processor")]
        originals = [module.processor for module in layers]
        for module, existing in zip(layers, originals, strict=True):
            module.set_processor(_recording_processor(existing, recorder))
        counting = unet.register_forward_pre_hook(recorder.unet_starts, with_kwargs=True)
        try:
            yield result
        finally:
            for module, existing in zip(layers, originals, strict=True):
                module.set_processor(existing)
            counting.remove()
        result.token_maps = recorder.token_maps()
        return

    model = pipeline.transformer
    before = _processors(model)
    wrapped = dict(before)
    assert family is not None and reader is not None
    image_tokens = None
    if family.name == "flux2":
        step = int(getattr(pipeline, "vae_scale_factor", 8)) * 2
        image_tokens = (height // step) * (width // step)
    half = GUIDED_HALF.get(family.name)
    recorder = _Recorder(width=width, height=height, guided=guided, half=half, reader=reader, image_tokens=image_tokens)
    if family.name in JOINT_TOKENIZERS:
        result.tokenizer = getattr(pipeline, JOINT_TOKENIZERS[family.name], None)
    else:
        result.tokenizer = text_reader(pipeline, family.name)
    for layer, name in enumerate(_joint_layers(model, reader, before)):
        wrapped[name] = _recording_processor(before[name], recorder, joint_layer=layer)
    starts = recorder.sequence_starts if reader == "zimage" else recorder.forward_starts
    hook = model.register_forward_pre_hook(starts, with_kwargs=True)
    _install(model, wrapped)
    try:
        yield result
    finally:
        _install(model, before)
        hook.remove()
    result.token_maps = recorder.token_maps()
