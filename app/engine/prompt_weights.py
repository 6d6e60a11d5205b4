"""Weighted prompts: ``(word:1.3)``, ``(word)``, ``[word]``, ``word++``/``word--`` and ``AND`` blends, through compel.

A prompt with weighting syntax, on a family whose capabilities say it reads it (the UNet
families: CLIP text encoders, and studio-tiny's MiniLM, which compel drives the same way since it
only needs a tokenizer and an encoder that returns hidden states), becomes prompt embeddings
built by compel. The syntax artists type is AUTOMATIC1111's, which compel does not read as is:
``(word:1.3)``, ``(word)`` (x1.1 per pair) and ``[word]`` (/1.1 per pair) are parsed as A1111
parses them and written as compel's ``(word)1.3``; compel's own ``word++``/``word--`` pass through;
``A AND B`` (optionally ``A :0.7 AND B``) becomes compel's conjunction ``("A", "B").and(1, 0.7)``.
A prompt without any of this syntax is left to the pipeline, which encodes it exactly as before.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from app.engine.families import Family

# Parentheses, brackets, +/- runs after a word, or an upper-case AND between parts.
_SYNTAX = re.compile(r"[()\[\]]|\w[+\-]+(?=\s|,|$)|\sAND\s")
_AND = re.compile(r"\s+AND\s+")
_PART_WEIGHT = re.compile(r"^(.*?)\s*:\s*(-?\d+(?:\.\d+)?)\s*$", re.DOTALL)


def has_weighting(text: str) -> bool:
    """Whether ``text`` uses any weighting syntax compel reads."""
    return bool(text) and _SYNTAX.search(text) is not None


# AUTOMATIC1111's attention tokens (modules/prompt_parser.py, re_attention): escapes, brackets,
# a ":weight)" closing a group, plain text, a lone colon.
_ATTENTION = re.compile(r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:")
_ROUND, _SQUARE = 1.1, 1 / 1.1


def parse_attention(text: str) -> list[tuple[str, float]]:
    """The text as (chunk, weight) runs, by AUTOMATIC1111's ``parse_prompt_attention``."""
    chunks: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for chunk in chunks[start:]:
            chunk[1] *= factor

    for match in _ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            chunks.append([token[1:], 1.0, True])
        elif token == "(":
            round_open.append(len(chunks))
        elif token == "[":
            square_open.append(len(chunks))
        elif weight is not None and round_open:
            try:
                multiply(round_open.pop(), float(weight))
            except ValueError:
                chunks.append([token, 1.0, False])
        elif token == ")" and round_open:
            multiply(round_open.pop(), _ROUND)
        elif token == "]" and square_open:
            multiply(square_open.pop(), _SQUARE)
        else:
            chunks.append([token, 1.0, False])
    for start in round_open:
        multiply(start, _ROUND)
    for start in square_open:
        multiply(start, _SQUARE)
    runs: list[tuple[str, float]] = []
    for chunk_text, chunk_weight, literal in chunks:
        # A bracket kept as text (escaped, or unmatched) is escaped again for compel.
        piece = re.sub(r"([()\[\]])", r"\\\1", chunk_text) if literal or chunk_text in ")]" else chunk_text
        if runs and runs[-1][1] == chunk_weight:
            runs[-1] = (runs[-1][0] + piece, chunk_weight)
        else:
            runs.append((piece, chunk_weight))
    return runs


def _compel_text(text: str) -> str:
    """One prompt's A1111 weights written in compel's syntax: ``(chunk)1.3``; weight-1 text as is."""
    written: list[str] = []
    for chunk, weight in parse_attention(text):
        core = chunk.strip()
        if weight == 1.0 or not core:
            written.append(chunk)
            continue
        lead, trail = chunk[: len(chunk) - len(chunk.lstrip())], chunk[len(chunk.rstrip()) :]
        written.append(f"{lead}({core}){round(weight, 4):g}{trail}")
    return "".join(written)


def to_compel(text: str) -> str:
    """A prompt in AUTOMATIC1111's syntax as compel reads it (weights, and ``AND`` as a conjunction)."""
    parts = _AND.split(text.strip())
    if len(parts) < 2:
        return _compel_text(text)
    prompts: list[str] = []
    weights: list[str] = []
    for part in parts:
        match = _PART_WEIGHT.match(part)
        prompt, weight = (match.group(1), match.group(2)) if match else (part, "1")
        prompts.append('"' + _compel_text(prompt.strip()).replace('"', '\\"') + '"')
        weights.append(weight)
    return f"({', '.join(prompts)}).and({', '.join(weights)})"


def _compel(pipeline: Any, family: Family) -> Any:
    from compel import Compel, ReturnedEmbeddingsType  # imported where the work runs

    if getattr(pipeline, "text_encoder_2", None) is not None and family.name == "sdxl":
        return Compel(
            tokenizer=[pipeline.tokenizer, pipeline.tokenizer_2],
            text_encoder=[pipeline.text_encoder, pipeline.text_encoder_2],
            returned_embeddings_type=ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED,
            requires_pooled=[False, True],
        )
    return Compel(tokenizer=_marked_tokenizer(pipeline), text_encoder=pipeline.text_encoder)


def _marked_tokenizer(pipeline: Any) -> Any:
    """The pipeline's tokenizer with start and end markers compel can find.

    compel frames every prompt with the tokenizer's ``bos``/``eos`` tokens, which CLIP has and a
    BERT tokenizer (studio-tiny's MiniLM) does not: it calls them ``[CLS]``/``[SEP]``. Without
    them compel would drop both markers and shift every token off the positions the model was
    trained on, so a copy (kept on the pipeline, the shared tokenizer untouched) names them.
    """
    tokenizer = pipeline.tokenizer
    if tokenizer.bos_token_id is not None or getattr(tokenizer, "cls_token", None) is None:
        return tokenizer
    marked = getattr(pipeline, "_studio_compel_tokenizer", None)
    if marked is None:
        marked = copy.deepcopy(tokenizer)
        marked.bos_token, marked.eos_token = tokenizer.cls_token, tokenizer.sep_token
        pipeline._studio_compel_tokenizer = marked
    return marked


def embeddings(pipeline: Any, family: Family, prompt: str, negative_prompt: str = "") -> dict[str, Any]:
    """Compel's embeddings of the prompt and the negative prompt, as the pipeline's keyword arguments.

    Both are padded to one length, since an AND blend makes a longer sequence than a plain prompt.
    """
    compel = _compel(pipeline, family)
    pooled = family.name == "sdxl" and getattr(pipeline, "text_encoder_2", None) is not None
    if pooled:
        positive, positive_pooled = compel(to_compel(prompt))
        negative, negative_pooled = compel(to_compel(negative_prompt))
    else:
        positive, negative = compel(to_compel(prompt)), compel(to_compel(negative_prompt))
    if positive.shape[1] != negative.shape[1]:
        # compel's own padding does not work with two encoders (SDXL): pad with the empty prompt's
        # embedding, one chunk at a time, as compel does for one encoder.
        empty = compel("")[0] if pooled else compel("")
        positive, negative = _padded(positive, empty, negative.shape[1]), _padded(negative, empty, positive.shape[1])
    arguments: dict[str, Any] = {"prompt_embeds": positive, "negative_prompt_embeds": negative}
    if pooled:
        arguments.update(pooled_prompt_embeds=positive_pooled, negative_pooled_prompt_embeds=negative_pooled)
    return arguments


def _padded(embeds: Any, empty: Any, length: int) -> Any:
    """``embeds`` grown to ``length`` tokens with the empty prompt's embedding."""
    import torch

    while embeds.shape[1] < length:
        embeds = torch.cat([embeds, empty[:, : length - embeds.shape[1]].to(embeds.dtype)], dim=1)
    return embeds


def weigh(pipeline: Any, family: Family, arguments: dict[str, Any]) -> None:
    """Replaces ``prompt``/``negative_prompt`` in a pipeline call by compel's embeddings when the
    prompt (or the negative prompt) has weighting syntax and the family reads it; else leaves them."""
    prompt = arguments.get("prompt")
    negative = arguments.get("negative_prompt") or ""
    if not isinstance(prompt, str) or not isinstance(negative, str):
        return  # a batch rewritten for style references keeps its texts as they are
    if not family.capabilities.weighted_prompts or not (has_weighting(prompt) or has_weighting(negative)):
        return
    arguments.update(embeddings(pipeline, family, prompt, negative))
    arguments.pop("prompt", None)
    arguments.pop("negative_prompt", None)
