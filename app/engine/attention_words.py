"""Attention words: which position of a denoiser's text sequence belongs to which word of the prompt.

The recorder (app.engine.attention_maps) sums attention per position of the text sequence the
denoiser reads; this module sums those positions per word. Two layouts:

- The prompt's own tokens (CLIP, T5, MiniLM): the sequence is the tokenizer's encoding of the
  prompt, special tokens included (the words of a weighted prompt are its text without the syntax).
- A chat template around the prompt (Qwen-Image's Qwen2.5-VL, Z-Image's and FLUX.2 [klein]'s Qwen3,
  FLUX.2 [dev]'s Mistral): the pipeline renders the prompt into a template (a system message,
  role markers) and encodes the whole text, so the prompt's tokens sit after the template's. They
  are found by rendering the template around the prompt, tokenizing it with character offsets as
  the pipeline does, and keeping the tokens inside the prompt's characters. Qwen-Image then cuts
  its system prompt's first ``prompt_template_encode_start_idx`` tokens, so positions shift by as
  many. These families read no weighting syntax: the words are those of the prompt as typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

# Text positions read at most (T5's 512 in FLUX.1; CLIP's 77 elsewhere; the chat templates' 512).
MAX_TOKENS = 512
# Characters that make a word; anything else (spaces, commas, brackets) separates words.
_WORD = re.compile(r"[\w'’-]+")
# A private-use character standing for the prompt while a template is rendered.
_MARK = "\ue000"


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


@dataclass(frozen=True)
class TemplatedText:
    """A text sequence that is the prompt rendered into a chat template (see the module's docstring)."""

    # What the pipeline renders the template with: a tokenizer, or a processor holding one.
    renderer: Any
    family: str
    # Klein renders Qwen3's template without thinking, Z-Image with it.
    klein: bool = False
    # Qwen-Image's system prompt tokens cut from the front; FLUX.2 [dev]'s system message.
    drop: int = 0
    template: str = ""
    system_message: str = ""

    def render(self, prompt: str) -> str:
        if self.family == "qwenimage":
            return self.template.format(prompt)
        if self.family == "flux2" and not self.klein:
            from diffusers.pipelines.flux2.pipeline_flux2 import format_input

            messages = format_input(prompts=[prompt], system_message=self.system_message)[0]
            return str(self.renderer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False))
        user = [{"role": "user", "content": prompt}]
        thinking = self.family == "zimage"
        return str(
            self.renderer.apply_chat_template(
                user, tokenize=False, add_generation_prompt=True, enable_thinking=thinking
            )
        )

    def positions(self, text: str, spans: list[tuple[int, int]]) -> list[int | None]:
        """For each position of the denoiser's text sequence, the index of its word or None."""
        before, mark, after = self.render(_MARK).partition(_MARK)
        if not mark or _MARK in after:
            raise ValueError("the chat template does not hold the prompt exactly once")
        tokenizer = getattr(self.renderer, "tokenizer", self.renderer)
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("a tokenizer without character offsets cannot place the prompt in its template")
        # FLUX.2 [dev] tokenizes through apply_chat_template, which adds no special tokens of its own.
        special = not (self.family == "flux2" and not self.klein)
        encoded = tokenizer(before + text + after, add_special_tokens=special, return_offsets_mapping=True)
        start = len(before)
        found: list[int | None] = []
        for start_char, end_char in encoded["offset_mapping"][self.drop :]:
            found.append(_word_at(spans, start_char - start, end_char - start))
        return found[:MAX_TOKENS]


def text_reader(pipeline: Any, family: str) -> Any:
    """What places the prompt's words in the text sequence of a chat-template family's denoiser."""
    tokenizer = getattr(pipeline, "tokenizer", None)
    if tokenizer is None:
        return None
    if family == "qwenimage":
        template = str(pipeline.prompt_template_encode)
        drop = int(pipeline.prompt_template_encode_start_idx)
        return TemplatedText(tokenizer, family, drop=drop, template=template)
    klein = "Klein" in type(pipeline).__name__
    system = str(getattr(pipeline, "system_message", ""))
    return TemplatedText(tokenizer, family, klein=klein, system_message=system)


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


def _word_at(spans: list[tuple[int, int]], start: int, end: int) -> int | None:
    for index, (word_start, word_end) in enumerate(spans):
        if start < word_end and end > word_start:
            return index
    return None


def _token_words(tokenizer: Any, text: str, spans: list[tuple[int, int]]) -> list[int | None]:
    """For each position of the encoded text (special tokens included), the index of its word or None."""
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(
            text,
            truncation=True,
            max_length=min(tokenizer.model_max_length, MAX_TOKENS),
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        return [
            None if special else _word_at(spans, start, end)
            for (start, end), special in zip(encoded["offset_mapping"], encoded["special_tokens_mask"], strict=True)
        ]
    # A slow tokenizer has no offsets: both CLIP's BPE and WordPiece split at spaces and punctuation
    # first, so tokenizing each piece alone gives the whole text's tokens, piece by piece.
    positions: list[int | None] = [None] * (1 if tokenizer.bos_token_id is not None or tokenizer.cls_token else 0)
    for piece in re.finditer(r"\S+", text):
        for part in re.finditer(r"[\w'’-]+|[^\w\s'’-]+", piece.group(0)):
            start = piece.start() + part.start()
            count = len(tokenizer(part.group(0), add_special_tokens=False)["input_ids"])
            positions.extend([_word_at(spans, start, start + len(part.group(0)))] * count)
    return positions[: min(tokenizer.model_max_length, MAX_TOKENS) - 1]


def word_maps(tokenizer: Any, prompt: str, token_maps: np.ndarray) -> WordMaps:
    """One image's token maps summed per word of ``prompt`` (words cut off by the token limit are left out).

    ``tokenizer`` is the prompt's tokenizer, or a ``TemplatedText`` for a chat-template family.
    """
    templated = isinstance(tokenizer, TemplatedText)
    text = prompt if templated else plain_text(prompt)
    found = [(match.group(0), match.span()) for match in _WORD.finditer(text)]
    spans = [span for _word, span in found]
    positions = tokenizer.positions(text, spans) if templated else _token_words(tokenizer, text, spans)
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
