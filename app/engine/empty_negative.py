"""The empty negative prompt's text embeddings: encoded once per warm text encoder, reused by later calls.

A guided SD 1.x/2.x call without a negative prompt encodes "" on every call (about 12 ms of
studio-tiny's MiniLM on the CPU), and gets the same embeddings every time as long as the text
encoder is unchanged. ``StableDiffusionPipeline.encode_prompt`` encodes the unconditional "" as it
encodes a prompt of "" (the same tokenizer padding and attention mask), except for ``clip_skip``
and a LoRA scale, so the cache is used only where neither applies. LoRAs may patch the text
encoder: a call with LoRAs neither reads nor fills the cache, so embeddings never cross a LoRA
change. Weighted and regional prompts arrive as embeddings already and are left alone.
"""

from __future__ import annotations

import inspect
from typing import Any

from app.engine.families import Family

# Families whose pipelines encode the empty negative prompt as a prompt of "" (encode_prompt above).
FAMILIES = frozenset({"sd1"})
# Where the cached embeddings live: on the text encoder module, so they go with it when it is unloaded.
ATTRIBUTE = "_studio_empty_negative"


def reuse(pipeline: Any, family: Family, arguments: dict[str, Any], *, loras: bool) -> bool:
    """Gives a guided call without a negative prompt the cached embeddings of "" (encoded on first use).

    Returns whether ``arguments`` got them. Call it inside inference mode, after the LoRAs, regions
    and prompt weights have had their say over ``arguments``.
    """
    if loras or family.name not in FAMILIES:
        return False
    if not isinstance(arguments.get("prompt"), str) or arguments.get("negative_prompt") is not None:
        return False
    if any(
        key in arguments for key in ("prompt_embeds", "negative_prompt_embeds", "clip_skip", "cross_attention_kwargs")
    ):
        return False
    if float(arguments.get(family.guidance_argument, 0.0) or 0.0) <= 1.0:
        return False
    encoder, tokenizer = getattr(pipeline, "text_encoder", None), getattr(pipeline, "tokenizer", None)
    if encoder is None or tokenizer is None or not hasattr(pipeline, "encode_prompt"):
        return False
    if "negative_prompt_embeds" not in inspect.signature(pipeline.__call__).parameters:
        return False
    device = pipeline._execution_device
    key = (id(tokenizer), str(device), encoder.dtype)
    cached = getattr(encoder, ATTRIBUTE, None)
    if cached is None or cached[0] != key:
        embeddings, _ = pipeline.encode_prompt("", device, 1, False)
        cached = (key, embeddings)
        object.__setattr__(encoder, ATTRIBUTE, cached)  # a plain attribute, not a parameter or buffer
    arguments["negative_prompt_embeds"] = cached[1]
    return True
