"""Procedural paintings with captions: the training data of studio-tiny.

Every sample is drawn from a seed and an index alone, so the same data set can be rebuilt
anywhere. Some colour-subject-place triples never appear in training (``is_held_out``), so the
adherence bench can prompt for combinations the model has not seen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

# Supersampling factor: shapes are drawn large and scaled down, which antialiases their edges.
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class Colour:
    name: str
    rgb: tuple[int, int, int]
    synonyms: tuple[str, ...]


COLOURS: tuple[Colour, ...] = (
    Colour("red", (215, 30, 35), ("red", "crimson", "scarlet")),
    Colour("orange", (245, 130, 20), ("orange", "tangerine")),
    Colour("yellow", (245, 220, 35), ("yellow", "golden")),
    Colour("green", (35, 165, 55), ("green", "emerald")),
    Colour("cyan", (30, 205, 215), ("cyan", "turquoise")),
    Colour("blue", (30, 65, 215), ("blue", "cobalt")),
    Colour("purple", (125, 40, 190), ("purple", "violet")),
    Colour("pink", (245, 125, 195), ("pink", "rose")),
    Colour("brown", (125, 75, 35), ("brown", "chestnut")),
    Colour("white", (245, 245, 245), ("white", "snow-white")),
    Colour("black", (20, 20, 20), ("black", "jet-black")),
    Colour("grey", (128, 128, 128), ("grey", "gray", "silver")),
)

SUBJECTS: tuple[str, ...] = (
    "sun",
    "moon",
    "mountain",
    "tree",
    "house",
    "boat",
    "flower",
    "star",
    "circle",
    "square",
)

# Centre of the subject for each place, as fractions of the canvas.
PLACES: dict[str, tuple[float, float]] = {
    "left": (0.25, 0.5),
    "right": (0.75, 0.5),
    "top": (0.5, 0.25),
    "bottom": (0.5, 0.75),
    "centre": (0.5, 0.5),
}

PLACE_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("on the left", "to the left", "at the left side"),
    "right": ("on the right", "to the right", "at the right side"),
    "top": ("at the top", "near the top", "high in the frame"),
    "bottom": ("at the bottom", "near the bottom", "low in the frame"),
    "centre": ("in the centre", "in the middle", "in the center"),
}


@dataclass(frozen=True)
class Scene:
    name: str
    sky_top: tuple[int, int, int]
    sky_bottom: tuple[int, int, int]
    # Ground colour and the fraction of the height it covers (0 = the sky fills the frame).
    ground: tuple[int, int, int]
    ground_height: float
    phrases: tuple[str, ...]
    nouns: tuple[str, ...]


SCENES: tuple[Scene, ...] = (
    Scene(
        "day",
        (110, 170, 240),
        (185, 220, 250),
        (0, 0, 0),
        0.0,
        ("under a blue sky", "on a sunny day", "in daylight"),
        ("daytime sky", "bright day scene"),
    ),
    Scene(
        "sunset",
        (120, 50, 120),
        (250, 140, 60),
        (0, 0, 0),
        0.0,
        ("at sunset", "in the evening glow", "at dusk"),
        ("sunset scene", "sunset sky"),
    ),
    Scene(
        "night",
        (8, 10, 40),
        (25, 35, 80),
        (0, 0, 0),
        0.0,
        ("at night", "under the night sky", "in the dark of night"),
        ("night scene", "starry night"),
    ),
    Scene(
        "sea",
        (140, 195, 240),
        (200, 230, 250),
        (20, 70, 150),
        0.45,
        ("on the sea", "by the ocean", "over the water"),
        ("seascape", "ocean view"),
    ),
    Scene(
        "meadow",
        (130, 190, 240),
        (205, 230, 250),
        (70, 160, 50),
        0.45,
        ("in a meadow", "on green grass", "in a grassy field"),
        ("meadow landscape", "green pasture"),
    ),
    Scene(
        "desert",
        (235, 215, 160),
        (250, 240, 200),
        (215, 170, 95),
        0.45,
        ("in the desert", "on the sand dunes", "among desert sands"),
        ("desert landscape", "dune scene"),
    ),
)

TEXTURES: dict[str, tuple[str, ...]] = {
    "flat": ("flat colours", "flat style", "simple flat shapes"),
    "strokes": ("brush strokes", "painterly brushwork", "thick brush strokes"),
    "dots": ("pointillist dots", "dotted style", "stippled dots"),
}

COLOUR_BY_NAME = {colour.name: colour for colour in COLOURS}
SCENE_BY_NAME = {scene.name: scene for scene in SCENES}


@dataclass(frozen=True)
class Painting:
    """What a sample shows; the caption is one of many ways to say it."""

    colour: str
    subject: str
    place: str
    scene: str
    texture: str


@dataclass(frozen=True)
class Sample:
    painting: Painting
    caption: str
    image: Image.Image
    # Where the subject is (255) and is not (0): training weighs its pixels more than the sky's.
    subject_mask: Image.Image


def is_held_out(colour: str, subject: str, place: str) -> bool:
    """About one triple in eight never appears in training: the bench prompts for those."""
    digest = hashlib.sha256(f"{colour}|{subject}|{place}".encode()).digest()
    return digest[0] % 8 == 0


def held_out_triples() -> list[tuple[str, str, str]]:
    return [(c.name, s, p) for c in COLOURS for s in SUBJECTS for p in PLACES if is_held_out(c.name, s, p)]


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption_for(painting: Painting, rng: np.random.Generator) -> str:
    """One of several phrasings; the texture is named in most but not all of them."""
    colour = _pick(rng, COLOUR_BY_NAME[painting.colour].synonyms)
    place = _pick(rng, PLACE_PHRASES[painting.place])
    scene = SCENE_BY_NAME[painting.scene]
    scene_phrase = _pick(rng, scene.phrases)
    scene_noun = _pick(rng, scene.nouns)
    texture = _pick(rng, TEXTURES[painting.texture])
    subject = painting.subject
    templates = (
        f"{_article(colour)} {colour} {subject} {place} {scene_phrase}",
        f"{scene_noun}, {colour} {subject} {place}",
        f"{texture} painting of {_article(colour)} {colour} {subject} {place} {scene_phrase}",
        f"{colour} {subject}, {place}, {scene_noun}, {texture}",
        f"{_article(scene_noun)} {scene_noun} with {_article(colour)} {colour} {subject} {place}, {texture}",
    )
    return templates[int(rng.integers(len(templates)))]


# Phrasings no training template uses, for measuring how the model generalises.
UNSEEN_PLACE_PHRASES = {
    "left": "placed on the left",
    "right": "placed on the right",
    "top": "placed at the top",
    "bottom": "placed at the bottom",
    "centre": "placed in the centre",
}
UNSEEN_SCENE_PHRASES = {
    "day": "blue daytime sky",
    "sunset": "sunset",
    "night": "night",
    "sea": "sea",
    "meadow": "meadow",
    "desert": "desert",
}


def unseen_prompt(colour: str, subject: str, place: str, scene: str) -> str:
    """A prompt in a phrasing that no training caption (``caption_for``) uses."""
    return f"picture of a {colour} {subject} {UNSEEN_PLACE_PHRASES[place]}, background: {UNSEEN_SCENE_PHRASES[scene]}"


def random_painting(rng: np.random.Generator, *, include_held_out: bool = False) -> Painting:
    while True:
        colour = COLOURS[int(rng.integers(len(COLOURS)))].name
        subject = SUBJECTS[int(rng.integers(len(SUBJECTS)))]
        place = list(PLACES)[int(rng.integers(len(PLACES)))]
        if include_held_out or not is_held_out(colour, subject, place):
            break
    scene = SCENES[int(rng.integers(len(SCENES)))].name
    texture = list(TEXTURES)[int(rng.integers(len(TEXTURES)))]
    return Painting(colour, subject, place, scene, texture)


def make_sample(seed: int, index: int, *, size: int = 64) -> Sample:
    """The training sample number ``index`` of the data set ``seed``."""
    rng = np.random.default_rng([seed, index])
    painting = random_painting(rng)
    caption = caption_for(painting, rng)
    from app.tiny.render import render_with_mask  # drawing builds on this module's vocabulary

    image, subject_mask = render_with_mask(painting, rng, size=size)
    return Sample(painting, caption, image, subject_mask)


def iter_samples(seed: int, count: int, *, size: int = 64) -> Iterator[Sample]:
    for index in range(count):
        yield make_sample(seed, index, size=size)
