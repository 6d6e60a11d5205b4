"""Joint attention, read per transformer family: the image tokens' queries against the text tokens' keys.

Each reader recomputes, from a layer's own projections, norms and rotary embeddings, the part of
its joint attention where image tokens attend to text tokens: (images, image tokens, text tokens)
probabilities, softmax over the text tokens and averaged over heads. app.engine.attention_maps
calls them from the processors it wraps (see its docstring for where each family keeps what).
"""

from __future__ import annotations

import math
from typing import Any


def attend(query: Any, key: Any, mask: Any = None) -> Any:
    """(images, queries, tokens): softmax(QK^T / sqrt(d)) over the keys, averaged over heads.

    ``query`` is (images, queries, heads, d), ``key`` (images, tokens, heads, d); ``mask`` (images,
    tokens) is true where a key may be attended.
    """
    import torch

    query, key = query.transpose(1, 2).float(), key.transpose(1, 2).float()
    scores = torch.matmul(query, key.transpose(-1, -2)) * (1.0 / math.sqrt(query.shape[-1]))
    if mask is not None:
        scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1).mean(dim=1)


def rotate_complex(x: Any, frequencies: Any) -> Any:
    """Qwen-Image's and Z-Image's rotary embedding: ``x`` (images, tokens, heads, d) times complex frequencies."""
    import torch

    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * frequencies.to(pairs.device).unsqueeze(-2)).flatten(3)


def flux(attn: Any, states: Any, arguments: dict[str, Any], rows: slice) -> Any:
    """SD3, FLUX.1 and FLUX.2: projected text keys, q/k norms, FLUX's real rotary rows [text..., image...]."""
    context = arguments.get("encoder_hidden_states")
    if context is None:
        return None
    text = context[rows]
    heads = attn.heads
    query, key = attn.to_q(states), attn.add_k_proj(text)
    head_dim = query.shape[-1] // heads
    query = query.view(query.shape[0], -1, heads, head_dim)
    key = key.view(key.shape[0], -1, heads, head_dim)
    if getattr(attn, "norm_q", None) is not None:
        query = attn.norm_q(query)
    if getattr(attn, "norm_added_k", None) is not None:
        key = attn.norm_added_k(key)
    rotary = arguments.get("image_rotary_emb")
    if rotary is not None:
        from diffusers.models.embeddings import apply_rotary_emb

        tokens, queries = text.shape[1], states.shape[1]
        cos, sin = rotary
        image = (cos[tokens : tokens + queries], sin[tokens : tokens + queries])
        query = apply_rotary_emb(query, image, sequence_dim=1)
        key = apply_rotary_emb(key, (cos[:tokens], sin[:tokens]), sequence_dim=1)
    return attend(query, key)


def qwen(attn: Any, states: Any, arguments: dict[str, Any], rows: slice) -> Any:
    """Qwen-Image: each stream rotated by its own complex frequencies; the text padding masked."""
    context = arguments.get("encoder_hidden_states")
    if context is None:
        return None
    text = context[rows]
    head_dim = attn.inner_dim // attn.heads
    query = attn.to_q(states).unflatten(-1, (-1, head_dim))
    key = attn.add_k_proj(text).unflatten(-1, (-1, head_dim))
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_added_k is not None:
        key = attn.norm_added_k(key)
    rotary = arguments.get("image_rotary_emb")
    if rotary is not None:
        image, words = rotary
        query = rotate_complex(query, image[: states.shape[1]])
        key = rotate_complex(key, words[: text.shape[1]])
    mask = arguments.get("encoder_hidden_states_mask")
    return attend(query, key, None if mask is None else mask[rows])


def zimage(
    attn: Any, hidden_states: Any, arguments: dict[str, Any], rows: slice, layout: list[tuple[int, int, int]]
) -> Any:
    """Z-Image: per item, its image tokens' queries against its caption tokens' keys, in one sequence."""
    import torch
    import torch.nn.functional as functional

    frequencies = arguments.get("freqs_cis")
    found = []
    for item in range(*rows.indices(hidden_states.shape[0])):
        tokens, padded, caption = layout[item]
        states = hidden_states[item : item + 1, :tokens]
        text = hidden_states[item : item + 1, padded : padded + caption]
        query = attn.to_q(states).unflatten(-1, (attn.heads, -1))
        key = attn.to_k(text).unflatten(-1, (attn.heads, -1))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if frequencies is not None:
            query = rotate_complex(query, frequencies[item : item + 1, :tokens])
            key = rotate_complex(key, frequencies[item : item + 1, padded : padded + caption])
        found.append(attend(query, key))
    if not found or len({probabilities.shape[1] for probabilities in found}) != 1:
        return None
    # Captions of a batch differ in length: shorter ones take nothing at the longer's positions.
    longest = max(probabilities.shape[2] for probabilities in found)

    return torch.cat([functional.pad(p, (0, longest - p.shape[2])) for p in found])
