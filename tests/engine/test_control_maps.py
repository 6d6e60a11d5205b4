"""Control maps: canny is OpenCV's Canny, scribble draws white strokes on black, none is the image, depth is refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.engine.control_maps import CANNY_HIGH, CANNY_LOW, UnsupportedKind, control_map


def _drawing(size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A pencil sketch: dark lines (a box and a diagonal) on white paper, with a coloured patch."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 12, 70, 50), outline="black", width=2)
    draw.line((0, 63, 95, 0), fill=(30, 30, 30), width=1)
    draw.ellipse((74, 40, 90, 56), fill=(200, 40, 40))
    return image


def test_the_canny_map_is_opencv_canny_of_the_grey_image_with_the_fixed_thresholds() -> None:
    image = _drawing()
    grey = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY)
    expected = cv2.Canny(grey, 100, 200)

    map_ = np.asarray(control_map(image, "canny"))

    assert (CANNY_LOW, CANNY_HIGH) == (100, 200)
    assert map_.shape == (64, 96, 3)
    assert expected.any()
    for channel in range(3):
        assert np.array_equal(map_[:, :, channel], expected)


def test_the_canny_map_is_found_at_the_painted_size() -> None:
    image = _drawing()
    resized = image.resize((48, 32), Image.Resampling.LANCZOS)
    expected = cv2.Canny(cv2.cvtColor(np.asarray(resized), cv2.COLOR_RGB2GRAY), 100, 200)

    map_ = control_map(image, "canny", size=(48, 32))

    assert map_.size == (48, 32)
    assert np.array_equal(np.asarray(map_)[:, :, 0], expected)


def test_scribble_turns_dark_lines_into_thick_white_strokes_on_black() -> None:
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).line((8, 32, 56, 32), fill="black", width=1)

    map_ = np.asarray(control_map(image, "scribble"))[:, :, 0]

    assert set(np.unique(map_)) == {0, 255}
    assert map_[32, 16:48].min() == 255  # on the line
    assert map_[31, 16:48].min() == 255 and map_[33, 16:48].min() == 255  # thickened by a pixel each side
    assert map_[:20].max() == 0 and map_[44:].max() == 0  # the paper stays black
    # A blank page has no strokes at all.
    assert np.asarray(control_map(Image.new("RGB", (64, 64), "white"), "scribble")).max() == 0


def test_none_hands_the_image_over_as_it_is() -> None:
    image = _drawing()

    assert np.array_equal(np.asarray(control_map(image, "none")), np.asarray(image))
    assert control_map(image.convert("L"), "none").mode == "RGB"


def test_depth_is_refused_for_want_of_a_local_depth_model() -> None:
    with pytest.raises(UnsupportedKind, match="depth-estimation model"):
        control_map(_drawing(), "depth")
    with pytest.raises(UnsupportedKind, match="unknown control kind"):
        control_map(_drawing(), "pose")
