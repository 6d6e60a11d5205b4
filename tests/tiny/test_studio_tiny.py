"""The committed studio-tiny weights follow prompts: colours and places move as asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run
from app.tiny.data import SCENES, held_out_triples, unseen_prompt
from app.tiny.judge import judge

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
# Of 12 images; set a little under what the committed weights score, so a retrain that loses
# colour binding fails here (the bench measures it on all 77 held-out triples).
MIN_COLOUR_HITS = 9
MIN_PLACE_HITS = 9

pytestmark = pytest.mark.skipif(
    not (MODELS_DIR / "studio-tiny" / "model_index.json").exists(), reason="models/studio-tiny is not trained yet"
)


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry(MODELS_DIR)


def paint(registry: ModelRegistry, prompt: str, seeds: range) -> np.ndarray:
    spec = GenerationSpec(model="studio-tiny", prompt=prompt, seed=seeds.start, steps=12, n_images=len(seeds))
    images = run(registry, spec, device="cpu").images
    return np.stack([np.asarray(image, dtype=np.float32) for image in images])


def redness(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., 0] - (pixels[..., 1] + pixels[..., 2]) / 2


def test_a_red_subject_on_the_left_puts_red_on_the_left(registry: ModelRegistry) -> None:
    left = paint(registry, "a red circle on the left under a blue sky", range(0, 4))
    right = paint(registry, "a red circle on the right under a blue sky", range(0, 4))
    # Red sits in the asked half, and more so than when asked for the other half.
    assert redness(left[:, :, :32]).mean() > redness(left[:, :, 32:]).mean()
    assert redness(right[:, :, 32:]).mean() > redness(right[:, :, :32]).mean()


def test_blue_and_yellow_subjects_differ_in_the_asked_direction(registry: ModelRegistry) -> None:
    blue = paint(registry, "a blue square in the centre in the desert", range(10, 14))
    yellow = paint(registry, "a yellow square in the centre in the desert", range(10, 14))
    centre = slice(20, 44)
    blue_centre, yellow_centre = blue[:, centre, centre], yellow[:, centre, centre]
    assert blue_centre[..., 2].mean() > yellow_centre[..., 2].mean()
    warmth = lambda pixels: pixels[..., 0].mean() + pixels[..., 1].mean()  # noqa: E731
    assert warmth(yellow_centre) > warmth(blue_centre)


def test_scenes_follow_the_prompt(registry: ModelRegistry) -> None:
    night = paint(registry, "a white star at the top at night", range(20, 23))
    desert = paint(registry, "a white star at the top in the desert", range(20, 23))
    assert night.mean() < desert.mean() - 40


def test_unseen_combinations_land_on_the_asked_colour_and_place(registry: ModelRegistry) -> None:
    # One held-out colour-subject-place triple per colour, in a phrasing no training caption uses.
    firsts: dict[str, tuple[str, str, str]] = {}
    for colour, subject, place in held_out_triples():
        firsts.setdefault(colour, (colour, subject, place))
    hits = {"colour": 0, "place": 0}
    for number, (colour, subject, place) in enumerate(firsts.values()):
        prompt = unseen_prompt(colour, subject, place, SCENES[number % len(SCENES)].name)
        spec = GenerationSpec(model="studio-tiny", prompt=prompt, seed=number, steps=20, guidance=5.0)
        verdict = judge(run(registry, spec, device="cpu").images[0])
        hits["colour"] += verdict.colour == colour
        hits["place"] += verdict.place == place
    assert len(firsts) == 12
    assert hits["colour"] >= MIN_COLOUR_HITS, hits
    assert hits["place"] >= MIN_PLACE_HITS, hits
