"""The subject-weighted losses that make studio-tiny learn colours, not just skies."""

from __future__ import annotations

import numpy as np
import torch

from app.tiny.train import _subject_weight, _weighted_mean


def test_subject_pixels_weigh_more_at_image_and_latent_size() -> None:
    masks = np.zeros((1, 64, 64), dtype=np.uint8)
    masks[0, 20:30, 40:50] = 255
    pixel = _subject_weight(masks, 5.0, 64, "cpu")
    assert pixel.shape == (1, 1, 64, 64)
    assert pixel[0, 0, 25, 45] == 6.0 and pixel[0, 0, 5, 5] == 1.0

    latent = _subject_weight(masks, 3.0, 8, "cpu")
    assert latent.shape == (1, 1, 8, 8)
    # Any subject pixel in a cell marks it, so a subject astride cells keeps all of them.
    assert {tuple(cell) for cell in torch.nonzero(latent[0, 0] > 1).tolist()} == {(2, 5), (2, 6), (3, 5), (3, 6)}


def test_weighted_mean_falls_back_to_plain_mean_without_a_subject() -> None:
    error = torch.rand(2, 4, 8, 8)
    plain = _subject_weight(np.zeros((2, 64, 64), dtype=np.uint8), 3.0, 8, "cpu")
    assert torch.isclose(_weighted_mean(error, plain), error.mean())
    weighted = torch.ones(2, 1, 8, 8)
    weighted[:, :, :2] = 4.0
    error = torch.zeros(2, 4, 8, 8)
    error[:, :, :2] = 1.0
    # 16 cells of error weighted 4 against 48 clean cells weighted 1.
    assert torch.isclose(_weighted_mean(error, weighted), torch.tensor(64 / (64 + 48)))
