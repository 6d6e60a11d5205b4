"""Attention: where each word of a painting's prompt landed, its heat maps, and refines from them.

A worker records one map per word while it paints (app.engine.attention_maps) and keeps them
beside the PNG in the image store (``attention/ab/<sha256>.npz``: the words, their character
spans in the prompt and a float16 (words, rows, columns) array, at most 32x32 per word, read
without pickles). A file per picture rather than a table: the maps belong to the PNG's bytes,
go when the PNG goes (``ImageStore.remove``) and reach every web process through the shared store.

What the numbers mean, per word ``w`` with map ``m_w`` (the share of each latent pixel's
cross-attention its tokens took, averaged over layers, heads and steps):

- lift ``l_w = m_w / mean(m_w) - 1``: how much more than its own average a place attends to the
  word. A word that landed has a place; one the model ignored is spread evenly (a nonsense word
  cut into many tokens may take much attention, but everywhere alike).
- the normalised map ``n_w = clip(l_w / max over all words and places of l, 0, 1)``: the heat map.
- ``coverage``: the share of the image where ``n_w >= STRONG`` (0.5).
- ``peak``: ``[x, y]``, fractions of the width and height, of the centre of the cell where ``m_w``
  is largest (``[0, 0]`` is the top left).
- ``strength``: the largest ``n_w``, 1 for the prompt's most placed word.
- ``weak``: a content word (not an article, preposition or conjunction) whose coverage is below
  ``WEAK_SHARE`` (a quarter) of the best content word's: "these words barely landed".
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image as PILImage
from sqlalchemy.orm import Session

from app.db.models import Generation, Image, ImageKind, User
from app.params import MAX_PROMPT
from app.services import explore, generations, images
from app.services.errors import InvalidInput, NotFound
from app.services.storage import ImageStore

STRONG = 0.5
WEAK_SHARE = 0.25
# The weight a one-click refine gives a word that barely landed, in A1111's syntax: (word:1.3).
WEIGHT_UP = 1.3
# Words that carry no subject of their own: shown in the strip, never marked as weak.
FUNCTION_WORDS = frozenset(
    {
        *("a", "an", "the", "this", "that", "these", "those", "its", "it", "their", "his", "her"),
        *("of", "on", "in", "at", "to", "with", "by", "for", "from", "into", "onto", "over", "under"),
        *("near", "behind", "beside", "and", "or", "but", "as", "is", "are", "was", "be"),
    }
)
# The heat map's colours (RGBA) where a word took nothing and where it took the most.
_UNLIT = (10, 11, 15, 190)
_LIT = (255, 196, 92, 64)
_MAX_WORDS = 256
_MAX_SIDE = 64
Refinement = Literal["weight", "earlier"]


@dataclass(frozen=True)
class WordLanding:
    word: str
    index: int
    coverage: float
    peak: tuple[float, float]
    strength: float
    weak: bool
    function_word: bool


@dataclass(frozen=True)
class ImageAttention:
    """An image's words and how each landed; ``reason`` says why there are none."""

    image: Image
    text: str
    words: list[WordLanding]
    heat: np.ndarray | None
    reason: str | None = None
    # where each word starts in ``text``
    starts: tuple[int, ...] = ()

    @property
    def available(self) -> bool:
        return self.heat is not None

    @property
    def weak_words(self) -> list[WordLanding]:
        return [word for word in self.words if word.weak]


def encode(*, text: str, words: list[str], spans: list[tuple[int, int]], maps: np.ndarray) -> bytes:
    """One image's word maps as a compressed ``.npz`` (no pickled objects)."""
    if maps.ndim != 3 or maps.shape[0] != len(words) or len(spans) != len(words):
        raise ValueError("one (rows, columns) map and one span per word")
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        text=np.array(text),
        words=np.array(words, dtype=str).reshape(len(words)),
        spans=np.array(spans, dtype=np.int32).reshape(len(words), 2),
        maps=maps.astype(np.float16),
    )
    return buffer.getvalue()


def save(
    store: ImageStore, sha256: str, *, text: str, words: list[str], spans: list[tuple[int, int]], maps: np.ndarray
) -> None:
    """Keeps a painting's word maps beside its PNG."""
    store.put_attention(sha256, encode(text=text, words=words, spans=spans, maps=maps))


def _load(store: ImageStore, sha256: str) -> tuple[str, list[str], list[int], np.ndarray] | None:
    path = store.attention_path(sha256)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            text = str(data["text"])
            words = [str(word) for word in data["words"]]
            starts = [int(start) for start in data["spans"].reshape(-1, 2)[:, 0]]
            maps = data["maps"].astype(np.float32)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        # Maps are written without a sync (app.services.storage): a crash may leave them cut short.
        return None
    if maps.ndim != 3 or not maps.shape[0] == len(words) == len(starts) or len(words) > _MAX_WORDS:
        return None
    if max(maps.shape[1:], default=0) > _MAX_SIDE:
        return None
    return text, words, starts, maps


def landings(words: list[str], maps: np.ndarray) -> tuple[list[WordLanding], np.ndarray]:
    """How each word landed (see the module's docstring), and the normalised heat maps."""
    count, rows, columns = maps.shape
    if count == 0:
        return [], maps
    means = maps.mean(axis=(1, 2), keepdims=True)
    lift = maps / np.maximum(means, 1e-12) - 1.0
    top = float(lift.max())
    heat = np.clip(lift / top, 0.0, 1.0) if top > 1e-6 else np.zeros_like(lift)
    coverage = (heat >= STRONG).mean(axis=(1, 2))
    function = [word.lower() in FUNCTION_WORDS for word in words]
    best = max((float(coverage[index]) for index in range(count) if not function[index]), default=0.0)
    found = []
    for index, word in enumerate(words):
        row, column = np.unravel_index(int(maps[index].argmax()), (rows, columns))
        found.append(
            WordLanding(
                word=word,
                index=index,
                coverage=round(float(coverage[index]), 4),
                peak=(round((column + 0.5) / columns, 4), round((row + 0.5) / rows, 4)),
                strength=round(float(heat[index].max()), 4),
                weak=not function[index] and best > 0 and float(coverage[index]) < WEAK_SHARE * best,
                function_word=function[index],
            )
        )
    return found, heat


def _unavailable(image: Image) -> str:
    if image.kind != ImageKind.OUTPUT:
        return "attention maps belong to paintings; this image was uploaded"
    model = f" ({image.generation.model})" if image.generation is not None else ""
    return (
        f"no attention maps were recorded for this painting{model}: they are recorded while any model the "
        "studio runs paints (SD 1.x, 2.x, XL, SD3, FLUX.1, FLUX.2, Qwen-Image, Z-Image, with or without an "
        "IP-Adapter), not for interpolations, a model compiled by the GPU fast path (STUDIO_COMPILE=1), "
        "a painting whose maps could not be read or kept, or paintings made before maps were kept"
    )


def for_image(session: Session, store: ImageStore, *, image_id: int, user: User | None) -> ImageAttention:
    """The words of a visible image's prompt and how each landed; NotFound for an image ``user`` can't see."""
    image = images.get_visible(session, image_id=image_id, user=user)
    loaded = _load(store, image.sha256) if image.kind == ImageKind.OUTPUT else None
    if loaded is None:
        prompt = image.generation.prompt if image.generation is not None else ""
        return ImageAttention(image=image, text=prompt, words=[], heat=None, reason=_unavailable(image))
    text, words, starts, maps = loaded
    found, heat = landings(words, maps)
    return ImageAttention(image=image, text=text, words=found, heat=heat, starts=tuple(starts))


def heat_map_png(session: Session, store: ImageStore, *, image_id: int, user: User | None, index: int) -> bytes:
    """Word ``index``'s heat map at the image's size: dimmed where the word did not land, lit where it did."""
    attention = for_image(session, store, image_id=image_id, user=user)
    if attention.heat is None:
        raise NotFound(f"image {image_id} has no attention maps: {attention.reason}")
    if not 0 <= index < len(attention.words):
        raise NotFound(f"image {image_id} has no word {index} (its prompt has {len(attention.words)} words)")
    image = attention.image
    small = PILImage.fromarray(attention.heat[index].astype(np.float32), mode="F")
    value = np.asarray(small.resize((image.width, image.height), PILImage.Resampling.BILINEAR), dtype=np.float32)
    value = np.clip(value, 0.0, 1.0)
    # A spotlight that reads over any painting: where the word did not land the picture is dimmed
    # (dark, 75 % opaque), where it landed most it is lit with a light warm tint (25 % opaque).
    shade = np.array(_UNLIT, dtype=np.float32)
    light = np.array(_LIT, dtype=np.float32)
    rgba = (shade + (light - shade) * value[..., None]).round().astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(rgba, mode="RGBA").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _whole_word(word: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w'’-]){re.escape(word)}(?![\w'’-])")


def _locate(prompt: str, text: str, word: str, start: int) -> tuple[int, int]:
    """Where the word found at ``start`` of the plain ``text`` stands in the prompt as typed.

    The plain text is the prompt without weighting syntax, so the n-th whole-word occurrence in
    one is the n-th in the other.
    """
    pattern = _whole_word(word)
    nth = sum(1 for match in pattern.finditer(text) if match.start() < start)
    for position, match in enumerate(pattern.finditer(prompt)):
        if position == nth:
            return match.span()
    raise InvalidInput(f"the word {word!r} is no longer in the prompt as typed")


def refined_prompt(prompt: str, text: str, chosen: list[tuple[str, int]], how: Refinement) -> str:
    """The prompt with the chosen words (word, start in ``text``) weighted up or moved to the front."""
    places = sorted((_locate(prompt, text, word, start) for word, start in chosen), reverse=True)
    written = prompt
    if how == "weight":
        for begin, end in places:
            written = f"{written[:begin]}({written[begin:end]}:{WEIGHT_UP:g}){written[end:]}"
        return written
    moved = [written[begin:end] for begin, end in reversed(places)]
    for begin, end in places:
        written = written[:begin] + written[end:]
    rest = re.sub(r"\s{2,}", " ", written).strip(" ,")
    return ", ".join(part for part in (" ".join(moved), rest) if part)


def refine(
    session: Session,
    store: ImageStore,
    *,
    owner: User,
    image_id: int,
    how: Refinement,
    indexes: list[int] | None = None,
) -> Generation:
    """A new step from the image's painting with the chosen words (by default the weak ones) weighted
    up as ``(word:1.3)`` or moved to the front of the prompt; the same seed, so only the prompt changes."""
    attention = for_image(session, store, image_id=image_id, user=owner)
    generation = attention.image.generation
    if generation is None or attention.heat is None:
        raise InvalidInput(f"image {image_id} has no attention maps to refine from: {attention.reason}")
    if indexes is None:
        indexes = [word.index for word in attention.weak_words]
        if not indexes:
            raise InvalidInput("every word of this prompt landed; choose the words to refine")
    unknown = sorted({index for index in indexes if not 0 <= index < len(attention.words)})
    if unknown:
        raise InvalidInput(f"the prompt has words 0 to {len(attention.words) - 1}; there is no word {unknown[0]}")
    chosen = [(attention.words[index].word, attention.starts[index]) for index in sorted(set(indexes))]
    prompt = refined_prompt(generation.prompt, attention.text, chosen, how)
    if len(prompt) > MAX_PROMPT:
        raise InvalidInput(f"the refined prompt would be longer than {MAX_PROMPT} characters")
    new = explore.as_new(generation)
    new.prompt = prompt
    new.parent_id = generation.id
    return generations.enqueue(session, owner=owner, new=new)
