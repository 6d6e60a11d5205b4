"""The procedural training data: coverage, determinism, held-out triples, captions."""

from __future__ import annotations

import numpy as np

from app.tiny.data import (
    COLOUR_BY_NAME,
    COLOURS,
    PLACES,
    SCENES,
    SUBJECTS,
    TEXTURES,
    Painting,
    held_out_triples,
    is_held_out,
    make_sample,
    unseen_prompt,
)
from app.tiny.judge import judge
from app.tiny.render import render


def test_vocabulary_covers_what_the_model_must_learn() -> None:
    assert len(COLOURS) >= 12
    assert len(SUBJECTS) >= 8
    assert set(PLACES) == {"left", "right", "top", "bottom", "centre"}
    assert len(SCENES) >= 5
    assert len(TEXTURES) >= 3


def test_same_seed_and_index_give_the_same_sample() -> None:
    first, again, other = make_sample(3, 17), make_sample(3, 17), make_sample(4, 17)
    assert first.caption == again.caption
    assert np.array_equal(np.asarray(first.image), np.asarray(again.image))
    assert first.caption != other.caption or not np.array_equal(np.asarray(first.image), np.asarray(other.image))


def test_captions_name_the_colour_and_subject_in_several_phrasings() -> None:
    samples = [make_sample(0, index) for index in range(200)]
    synonyms = {colour.name: colour.synonyms for colour in COLOURS}
    for sample in samples:
        assert sample.painting.subject in sample.caption
        assert any(word in sample.caption for word in synonyms[sample.painting.colour])
    shapes = {sample.caption.split(" ")[0] for sample in samples}
    assert len(shapes) > 10, "captions should not all start the same way"


def test_held_out_triples_never_appear_in_training_samples() -> None:
    held_out = set(held_out_triples())
    assert 0.05 < len(held_out) / (len(COLOURS) * len(SUBJECTS) * len(PLACES)) < 0.25
    for index in range(500):
        painting = make_sample(0, index).painting
        assert not is_held_out(painting.colour, painting.subject, painting.place)
        assert (painting.colour, painting.subject, painting.place) not in held_out


def test_judge_reads_colour_place_and_scene_of_ground_truth_paintings() -> None:
    hits = {"colour": 0, "place": 0, "scene": 0}
    cases = [
        Painting(colour, subject, place, scene.name, "flat")
        for colour in ("red", "yellow", "blue", "purple")
        for subject in ("circle", "star", "boat")
        for place in PLACES
        for scene in SCENES[:3]
    ]
    for number, painting in enumerate(cases):
        verdict = judge(render(painting, np.random.default_rng(number)))
        hits["colour"] += verdict.colour == painting.colour
        hits["place"] += verdict.place == painting.place
        hits["scene"] += verdict.scene == painting.scene
    assert hits["colour"] / len(cases) > 0.9
    assert hits["place"] / len(cases) > 0.9
    assert hits["scene"] / len(cases) > 0.95


def test_subject_mask_covers_the_subject_where_the_caption_puts_it() -> None:
    for index in range(40):
        sample = make_sample(0, index)
        mask = np.asarray(sample.subject_mask, dtype=np.float32) / 255.0
        assert mask.shape == (64, 64)
        # A third of the frame wide at most; even a thin crescent moon keeps a few latent cells.
        assert 0.03 < mask.mean() < 0.25, sample.painting
        ys, xs = np.nonzero(mask > 0.5)
        place = min(
            PLACES,
            key=lambda name: (PLACES[name][0] - xs.mean() / 64) ** 2 + (PLACES[name][1] - ys.mean() / 64) ** 2,
        )
        assert place == sample.painting.place
        if sample.painting.texture == "flat":
            # Under the mask lies the asked colour (or its darker shade on details).
            inside = np.median(np.asarray(sample.image, dtype=np.float32)[mask > 0.9], axis=0)
            asked = np.array(COLOUR_BY_NAME[sample.painting.colour].rgb, dtype=np.float32)
            assert np.linalg.norm(inside - asked) < 60 or np.linalg.norm(inside - asked * 0.6) < 60


def test_unseen_prompts_use_words_no_training_caption_does() -> None:
    prompt = unseen_prompt("red", "boat", "left", "day")
    assert prompt == "picture of a red boat placed on the left, background: blue daytime sky"
    for index in range(300):
        caption = make_sample(0, index).caption
        assert "placed" not in caption and "background:" not in caption and "picture of" not in caption
