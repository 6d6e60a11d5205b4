"""Text embeddings of plain prompts, kept per warm text encoder and reused by later calls.

An artist repaints the same prompt again and again (new seeds, a seed grid, refine after refine),
and a guided SD 1.x/2.x call without a negative prompt encodes "" every time: each encoding is a
text-encoder pass (about 8 ms of studio-tiny's MiniLM on the CPU, more for a real CLIP) that gives
the same embeddings as long as the text encoder is unchanged. So the embeddings of each prompt and
negative prompt are kept, the most recently used ``CAPACITY`` per encoder, and a call gets them
instead of the text.

``StableDiffusionPipeline.encode_prompt`` encodes a prompt, and the unconditional text of a guided
call, one text at a time with the same tokenizer padding and attention mask, so embeddings encoded
alone are the ones the call would have made, except for ``clip_skip`` and a LoRA scale: the cache
is used only where neither applies. LoRAs may patch the text encoder: a call with LoRAs neither
reads nor fills the cache, so embeddings never cross a LoRA change. Weighted and regional prompts
arrive as embeddings already and are left alone. A batch's prompts, encoded together by the
pipeline, are here encoded one by one, which can move their embeddings in the last bits: a batched
image stays within a level of its solo painting, as batching promises.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Any

import torch

from app.engine.families import Family

# Families whose pipelines encode a prompt and the unconditional text as above.
FAMILIES = frozenset({"sd1"})
# Where the embeddings live: on the text encoder module, so they go with it when it is unloaded.
ATTRIBUTE = "_studio_prompt_embeddings"
# Prompts kept per text encoder: an embedding of studio-tiny is 77 x 384 floats, of SD 1.5 77 x 768
# halves (about 120 KB either way), so the cache stays under 8 MB.
CAPACITY = 64
# Arguments that say the call builds its conditioning otherwise; the cache keeps out of their way.
_OWN_CONDITIONING = ("prompt_embeds", "negative_prompt_embeds", "clip_skip", "cross_attention_kwargs")


def reuse(pipeline: Any, family: Family, arguments: dict[str, Any], *, loras: bool, device: str) -> bool:
    """Gives a call the kept embeddings of its prompts (encoding those not kept yet) in place of the text.

    ``device`` is the one the call paints on (the registry's, where the pipeline is warm; under
    low-VRAM offload, where each module runs): named here because asking the pipeline
    (``_execution_device``) walks every module of every component, 3-4 ms a call on the CPU.
    Returns whether ``arguments`` got them. Call it inside inference mode, after the LoRAs, regions
    and prompt weights have had their say over ``arguments``.
    """
    if loras or family.name not in FAMILIES:
        return False
    prompts = _texts(arguments.get("prompt"))
    if prompts is None or any(key in arguments for key in _OWN_CONDITIONING):
        return False
    encoder, tokenizer = getattr(pipeline, "text_encoder", None), getattr(pipeline, "tokenizer", None)
    if encoder is None or tokenizer is None or not hasattr(pipeline, "encode_prompt"):
        return False
    if "prompt_embeds" not in inspect.signature(pipeline.__call__).parameters:
        return False
    guided = float(arguments.get(family.guidance_argument, 0.0) or 0.0) > 1.0
    negatives: list[str] | None = None
    if guided:
        negative = arguments.get("negative_prompt")
        negatives = [""] * len(prompts) if negative is None else _texts(negative)
        if negatives is None or len(negatives) not in (1, len(prompts)):
            return False
        negatives = negatives * len(prompts) if len(negatives) == 1 else negatives

    target = torch.device(device)
    kept = _kept(target, encoder, tokenizer)
    arguments["prompt_embeds"] = torch.cat([_embedding(pipeline, target, kept, text) for text in prompts])
    if negatives is not None:
        arguments["negative_prompt_embeds"] = torch.cat(
            [_embedding(pipeline, target, kept, text) for text in negatives]
        )
    arguments.pop("prompt")
    arguments.pop("negative_prompt", None)
    return True


def _texts(value: Any) -> list[str] | None:
    """A prompt argument as its texts: one string, or a list of strings; None for anything else."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(text, str) for text in value):
        return list(value)
    return None


def _kept(device: torch.device, encoder: Any, tokenizer: Any) -> OrderedDict[str, torch.Tensor]:
    """The encoder's kept embeddings, emptied when the tokenizer, device or precision changed."""
    key = (id(tokenizer), str(device), encoder.dtype)
    cached = getattr(encoder, ATTRIBUTE, None)
    if cached is None or cached[0] != key:
        cached = (key, OrderedDict())
        object.__setattr__(encoder, ATTRIBUTE, cached)  # a plain attribute, not a parameter or buffer
    kept: OrderedDict[str, torch.Tensor] = cached[1]
    return kept


def _embedding(pipeline: Any, device: torch.device, kept: OrderedDict[str, torch.Tensor], text: str) -> torch.Tensor:
    embedding = kept.get(text)
    if embedding is None:
        embedding, _ = pipeline.encode_prompt(text, device, 1, False)
        kept[text] = embedding
        if len(kept) > CAPACITY:
            kept.popitem(last=False)
    else:
        kept.move_to_end(text)
    return embedding
