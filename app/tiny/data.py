"""Procedural paintings with captions: the training data of studio-tiny.

Every sample is drawn from a seed and an index alone, so the same data set can be rebuilt
anywhere. Some colour-subject-place triples never appear in training (``is_held_out``), so the
adherence bench can prompt for combinations the model has not seen.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

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
    image, subject_mask = render_with_mask(painting, rng, size=size)
    return Sample(painting, caption, image, subject_mask)


def iter_samples(seed: int, count: int, *, size: int = 64) -> Iterator[Sample]:
    for index in range(count):
        yield make_sample(seed, index, size=size)


# --- drawing -------------------------------------------------------------------------------


def _background(scene: Scene, canvas: int, rng: np.random.Generator) -> np.ndarray:
    rows = np.linspace(0.0, 1.0, canvas)[:, None, None]
    top = np.array(scene.sky_top, dtype=np.float32)
    bottom = np.array(scene.sky_bottom, dtype=np.float32)
    pixels = np.broadcast_to(top + (bottom - top) * rows, (canvas, canvas, 3)).copy()
    if scene.ground_height > 0:
        horizon = int(canvas * (1 - scene.ground_height + rng.uniform(-0.05, 0.05)))
        ground = np.array(scene.ground, dtype=np.float32)
        depth = np.linspace(1.0, 0.8, canvas - horizon)[:, None, None]
        pixels[horizon:] = ground * depth
        if scene.name == "sea":
            for _ in range(6):
                y = int(rng.integers(horizon + 4, canvas - 2))
                x0 = int(rng.integers(0, canvas // 2))
                pixels[y : y + 3, x0 : x0 + canvas // 3] = ground * 1.4
    if scene.name == "night":
        for _ in range(25):
            y, x = int(rng.integers(0, canvas)), int(rng.integers(0, canvas))
            pixels[y : y + 3, x : x + 3] = 230.0
    return np.clip(pixels, 0, 255)


def _star_points(cx: float, cy: float, r: float, rotation: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        radius = r if k % 2 == 0 else r * 0.42
        angle = rotation - math.pi / 2 + k * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def _draw_subject(
    subject: str,
    body: ImageDraw.ImageDraw,
    detail: ImageDraw.ImageDraw,
    cx: float,
    cy: float,
    r: float,
    rng: np.random.Generator,
) -> None:
    """Draws into two masks: ``body`` takes the asked colour, ``detail`` a darker shade of it."""
    if subject == "sun":
        body.ellipse((cx - r * 0.6, cy - r * 0.6, cx + r * 0.6, cy + r * 0.6), fill=255)
        for k in range(8):
            angle = k * math.pi / 4
            body.line(
                (
                    cx + r * 0.7 * math.cos(angle),
                    cy + r * 0.7 * math.sin(angle),
                    cx + r * math.cos(angle),
                    cy + r * math.sin(angle),
                ),
                fill=255,
                width=max(2, int(r * 0.14)),
            )
    elif subject == "moon":
        body.ellipse((cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8), fill=255)
        shift = r * 0.45
        body.ellipse((cx - r * 0.8 + shift, cy - r * 0.9, cx + r * 0.8 + shift, cy + r * 0.7), fill=0)
    elif subject == "mountain":
        body.polygon([(cx - r * 0.8, cy + r * 0.8), (cx, cy - r * 0.9), (cx + r * 0.8, cy + r * 0.8)], fill=255)
        detail.polygon([(cx - r * 0.3, cy - r * 0.25), (cx, cy - r * 0.9), (cx + r * 0.3, cy - r * 0.25)], fill=255)
    elif subject == "tree":
        detail.rectangle((cx - r * 0.15, cy + r * 0.1, cx + r * 0.15, cy + r), fill=255)
        body.ellipse((cx - r * 0.7, cy - r, cx + r * 0.7, cy + r * 0.35), fill=255)
    elif subject == "house":
        body.rectangle((cx - r * 0.7, cy - r * 0.1, cx + r * 0.7, cy + r * 0.9), fill=255)
        detail.polygon([(cx - r * 0.9, cy - r * 0.1), (cx, cy - r * 0.9), (cx + r * 0.9, cy - r * 0.1)], fill=255)
        detail.rectangle((cx - r * 0.15, cy + r * 0.35, cx + r * 0.15, cy + r * 0.9), fill=255)
    elif subject == "boat":
        body.polygon(
            [
                (cx - r * 0.85, cy + r * 0.3),
                (cx + r * 0.85, cy + r * 0.3),
                (cx + r * 0.55, cy + r * 0.8),
                (cx - r * 0.55, cy + r * 0.8),
            ],
            fill=255,
        )
        detail.rectangle((cx - r * 0.05, cy - r, cx + r * 0.05, cy + r * 0.3), fill=255)
        body.polygon(
            [(cx + r * 0.1, cy - r * 0.9), (cx + r * 0.1, cy + r * 0.2), (cx + r * 0.8, cy + r * 0.2)], fill=255
        )
    elif subject == "flower":
        detail.line((cx, cy, cx, cy + r), fill=255, width=max(2, int(r * 0.12)))
        for k in range(5):
            angle = k * 2 * math.pi / 5
            px, py = cx + r * 0.42 * math.cos(angle), cy - r * 0.25 + r * 0.42 * math.sin(angle)
            body.ellipse((px - r * 0.32, py - r * 0.32, px + r * 0.32, py + r * 0.32), fill=255)
        detail.ellipse((cx - r * 0.18, cy - r * 0.43, cx + r * 0.18, cy - r * 0.07), fill=255)
    elif subject == "star":
        body.polygon(_star_points(cx, cy, r, float(rng.uniform(-0.2, 0.2))), fill=255)
    elif subject == "circle":
        body.ellipse((cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8), fill=255)
    elif subject == "square":
        body.rectangle((cx - r * 0.7, cy - r * 0.7, cx + r * 0.7, cy + r * 0.7), fill=255)
    else:
        raise ValueError(f"unknown subject {subject!r}")


def _apply_texture(pixels: np.ndarray, texture: str, rng: np.random.Generator) -> np.ndarray:
    if texture == "flat":
        return pixels
    canvas = pixels.shape[0]
    image = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    if texture == "strokes":
        for _ in range(canvas * 2):
            x, y = rng.uniform(0, canvas, size=2)
            colour = np.clip(pixels[int(y), int(x)] + rng.normal(0, 14, 3), 0, 255).astype(int)
            angle = rng.uniform(-0.6, 0.6)
            length = rng.uniform(canvas * 0.03, canvas * 0.06)
            dx, dy = length * math.cos(angle), length * math.sin(angle)
            draw.line((x - dx, y - dy, x + dx, y + dy), fill=tuple(colour), width=max(2, canvas // 40))
        return np.asarray(image, dtype=np.float32)
    if texture == "dots":
        image = Image.fromarray(np.clip(pixels * 0.75 + 255 * 0.25, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        radius = max(2, canvas // 64)
        spacing = radius * 2
        for y in range(0, canvas, spacing):
            for x in range(0, canvas, spacing):
                jx, jy = x + rng.uniform(-1, 1) * radius * 0.5, y + rng.uniform(-1, 1) * radius * 0.5
                colour = np.clip(
                    pixels[min(int(jy), canvas - 1), min(int(jx), canvas - 1)] + rng.normal(0, 12, 3), 0, 255
                )
                draw.ellipse((jx - radius, jy - radius, jx + radius, jy + radius), fill=tuple(colour.astype(int)))
        return np.asarray(image, dtype=np.float32)
    raise ValueError(f"unknown texture {texture!r}")


def render(painting: Painting, rng: np.random.Generator, *, size: int = 64) -> Image.Image:
    """Paints ``painting`` at ``size`` x ``size`` pixels, with a little random jitter."""
    return render_with_mask(painting, rng, size=size)[0]


def render_with_mask(
    painting: Painting, rng: np.random.Generator, *, size: int = 64
) -> tuple[Image.Image, Image.Image]:
    """The painting and the mask of its subject, both ``size`` x ``size``."""
    canvas = size * _SUPERSAMPLE
    scene = SCENE_BY_NAME[painting.scene]
    pixels = _background(scene, canvas, rng)

    fx, fy = PLACES[painting.place]
    cx = (fx + rng.uniform(-0.05, 0.05)) * canvas
    cy = (fy + rng.uniform(-0.05, 0.05)) * canvas
    # The subject spans about a third of the frame: smaller, its colour is a couple of latent
    # pixels and the autoencoder loses it; larger, it would fill half a row and hide the sky.
    radius = rng.uniform(0.2, 0.25) * canvas
    body_mask = Image.new("L", (canvas, canvas), 0)
    detail_mask = Image.new("L", (canvas, canvas), 0)
    _draw_subject(painting.subject, ImageDraw.Draw(body_mask), ImageDraw.Draw(detail_mask), cx, cy, radius, rng)

    colour = np.array(COLOUR_BY_NAME[painting.colour].rgb, dtype=np.float32)
    shade = colour * 0.6 if painting.colour != "black" else np.array([70.0, 70.0, 70.0])
    body = np.asarray(body_mask, dtype=np.float32)[..., None] / 255.0
    detail = np.asarray(detail_mask, dtype=np.float32)[..., None] / 255.0
    pixels = pixels * (1 - body) + colour * body
    pixels = pixels * (1 - detail) + shade * detail

    pixels = _apply_texture(pixels, painting.texture, rng)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    subject_mask = Image.fromarray(np.maximum(np.asarray(body_mask), np.asarray(detail_mask)))
    return (
        image.resize((size, size), Image.Resampling.LANCZOS),
        subject_mask.resize((size, size), Image.Resampling.BOX),
    )
