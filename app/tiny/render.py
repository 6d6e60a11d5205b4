"""Drawing studio-tiny's procedural paintings: backgrounds, subjects and textures, supersampled."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from app.tiny.data import _SUPERSAMPLE, COLOUR_BY_NAME, PLACES, SCENE_BY_NAME, Painting, Scene


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
