"""Control maps: the pictures a ControlNet follows, computed from an image with OpenCV, without weights.

A ControlNet is trained on one kind of map: edges (canny), sketch lines (scribble), depth. The
studio computes the maps it can without a network:

- ``canny``: OpenCV's Canny edge detector on the grey image, thresholds fixed at 100 and 200
  (AUTOMATIC1111's defaults), white edges on black.
- ``scribble``: lines as a scribble ControlNet wants them, white strokes on black: the XDoG
  filter (a sharp and a broad Gaussian blur subtracted; where the image is darker than its
  surroundings by more than ``SCRIBBLE_THRESHOLD`` it is a line), then thickened by one pixel
  with a 3x3 dilation so a line survives the ControlNet's downsampling. A pencil sketch (dark
  lines on paper) and a photo both become strokes.
- ``none``: the image as it is, for a map made elsewhere (a depth map, a pose, a sketch already
  white on black).

``depth`` needs a depth-estimation network; the studio runs none, so it is refused before a job is
queued (``DEPTH_REFUSAL``). Upload a depth map and use ``none`` instead.

The image is first resized to the painted size (Lanczos), so edges are found at the resolution
the ControlNet sees. Imports no torch: the web side shows the map before painting.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from app.params import CONTROL_KINDS

# The kinds computed here; depth would need a local depth-estimation model.
WEIGHTLESS_KINDS = ("canny", "scribble", "none")

CANNY_LOW, CANNY_HIGH = 100, 200
SCRIBBLE_SIGMAS = (0.5, 5.0)
SCRIBBLE_THRESHOLD = 32

DEPTH_REFUSAL = (
    "depth maps need a local depth-estimation model, which the studio does not run; "
    "upload a depth map and use kind 'none'"
)


class UnsupportedKind(ValueError):
    """A control kind this module does not compute (depth)."""


def _resized(image: Image.Image, size: tuple[int, int] | None) -> Image.Image:
    rgb = image.convert("RGB")
    if size is not None and rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.LANCZOS)
    return rgb


def canny(image: Image.Image) -> np.ndarray:
    """Canny edges of the grey image (uint8, 255 on an edge), with the fixed thresholds."""
    grey = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY)
    return cv2.Canny(grey, CANNY_LOW, CANNY_HIGH)


def scribble(image: Image.Image) -> np.ndarray:
    """White strokes on black (uint8): XDoG lines, dilated by one pixel."""
    pixels = np.asarray(image.convert("RGB")).astype(np.float32)
    sharp = cv2.GaussianBlur(pixels, (0, 0), SCRIBBLE_SIGMAS[0])
    broad = cv2.GaussianBlur(pixels, (0, 0), SCRIBBLE_SIGMAS[1])
    # How much darker than its surroundings a pixel is on every channel (AUTOMATIC1111's scribble_xdog).
    darker = np.min(broad - sharp, axis=2)
    lines = np.where(2 * darker > SCRIBBLE_THRESHOLD, 255, 0).astype(np.uint8)
    return cv2.dilate(lines, np.ones((3, 3), np.uint8))


def control_map(image: Image.Image, kind: str, *, size: tuple[int, int] | None = None) -> Image.Image:
    """The RGB map a ControlNet of ``kind`` follows, from ``image`` resized to ``size`` (width, height)."""
    source = _resized(image, size)
    if kind == "none":
        return source
    if kind == "canny":
        return Image.fromarray(canny(source)).convert("RGB")
    if kind == "scribble":
        return Image.fromarray(scribble(source)).convert("RGB")
    if kind == "depth":
        raise UnsupportedKind(DEPTH_REFUSAL)
    raise UnsupportedKind(f"unknown control kind {kind!r}; choose one of {', '.join(CONTROL_KINDS)}")
