"""Judging a painting: the subject's colour and place, and the scene, measured from pixels.

A deliberately simple detector: it knows what each scene's sky and ground look like, takes the
pixels that differ most from that background as the subject, and names the nearest palette
colour, the nearest place and the nearest scene. It reads only the image, never the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from app.tiny.data import COLOURS, PLACES, SCENES, Scene

# Pixels this far (RGB distance) from the expected background count as the subject.
_SUBJECT_DISTANCE = 70.0
_MIN_SUBJECT_PIXELS = 0.01


@dataclass(frozen=True)
class Verdict:
    colour: str | None
    place: str | None
    scene: str
    subject_fraction: float


def _scene_background(scene: Scene, size: int) -> np.ndarray:
    """The scene without texture, stars or waves: a sky gradient over a flat ground."""
    rows = np.linspace(0.0, 1.0, size)[:, None, None]
    top = np.array(scene.sky_top, dtype=np.float32)
    bottom = np.array(scene.sky_bottom, dtype=np.float32)
    pixels = np.broadcast_to(top + (bottom - top) * rows, (size, size, 3)).copy()
    if scene.ground_height > 0:
        horizon = int(size * (1 - scene.ground_height))
        pixels[horizon:] = np.array(scene.ground, dtype=np.float32) * 0.9
    return pixels


def judge_scene(pixels: np.ndarray) -> str:
    """The scene whose sky and ground best match the image's edges (the subject rarely reaches them)."""
    size = pixels.shape[0]
    band = max(2, size // 8)
    best, best_distance = SCENES[0].name, float("inf")
    for scene in SCENES:
        expected = _scene_background(scene, size)
        mask = np.zeros((size, size), dtype=bool)
        mask[:, :band] = mask[:, -band:] = True
        distance = float(np.median(np.linalg.norm(pixels[mask] - expected[mask], axis=-1)))
        if distance < best_distance:
            best, best_distance = scene.name, distance
    return best


def judge(image: Image.Image) -> Verdict:
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    size = pixels.shape[0]
    scene_name = judge_scene(pixels)
    # Sky and ground are constant along a row and the subject covers well under half of any row,
    # so each row's median is its background.
    background = np.median(pixels, axis=1, keepdims=True)
    distance = np.linalg.norm(pixels - background, axis=-1)
    raw = Image.fromarray(((distance > _SUBJECT_DISTANCE) * 255).astype(np.uint8))
    # An opening wipes out what is thinner than the subject: waves, stars, brush strokes.
    opened = raw.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.MaxFilter(3))
    subject = np.asarray(opened) > 0
    fraction = float(subject.mean())
    if fraction < _MIN_SUBJECT_PIXELS:
        return Verdict(None, None, scene_name, fraction)

    ys, xs = np.nonzero(subject)
    # Weight by how far each pixel is from the background: the subject's core counts most.
    weights = distance[subject]
    cx = float((xs * weights).sum() / weights.sum()) / size
    cy = float((ys * weights).sum() / weights.sum()) / size
    place = min(PLACES, key=lambda name: (PLACES[name][0] - cx) ** 2 + (PLACES[name][1] - cy) ** 2)

    colour_pixels = pixels[subject]
    # The most distinct half of the subject pixels: edges blend into the background.
    core = colour_pixels[weights >= np.median(weights)]
    median = np.median(core, axis=0)
    colour = min(COLOURS, key=lambda c: float(np.linalg.norm(np.array(c.rgb, dtype=np.float32) - median)))
    return Verdict(colour.name, place, scene_name, fraction)
