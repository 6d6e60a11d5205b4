"""Attention service: how each word landed, the weak-word rule, the stored file and the refined prompts."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.services import attention
from app.services.storage import ImageStore


def _maps() -> tuple[list[str], np.ndarray]:
    """'a red qzxv boat': the boat sits in the left column, red everywhere a little, qzxv spread evenly."""
    boat = np.full((4, 4), 0.04, dtype=np.float32)
    boat[:, 0] = 0.2
    red = np.full((4, 4), 0.05, dtype=np.float32)
    red[1:3, 0:2] = 0.12
    qzxv = np.full((4, 4), 0.15, dtype=np.float32)
    qzxv[2, 2] = 0.17
    a = np.full((4, 4), 0.02, dtype=np.float32)
    return ["a", "red", "qzxv", "boat"], np.stack([a, red, qzxv, boat])


def test_a_placed_word_peaks_where_it_sits_and_an_even_one_lands_weakly() -> None:
    words, maps = _maps()

    found, heat = attention.landings(words, maps)

    a, red, qzxv, boat = found
    assert boat.peak[0] == pytest.approx(0.125) and boat.strength == 1.0
    assert boat.coverage == pytest.approx(0.25)  # its column, a quarter of the image
    assert red.coverage > 0 and not red.weak
    assert qzxv.coverage == 0.0 and qzxv.weak
    # An article is never called weak, even when it landed nowhere.
    assert a.function_word and not a.weak
    assert heat.shape == maps.shape and float(heat.max()) == 1.0 and float(heat.min()) == 0.0


def test_flat_maps_have_no_coverage_and_nothing_is_weak_against_nothing() -> None:
    found, heat = attention.landings(["sea", "sky"], np.full((2, 3, 3), 0.1, dtype=np.float32))
    assert [word.coverage for word in found] == [0.0, 0.0]
    assert not any(word.weak for word in found)
    assert not heat.any()


def test_the_maps_are_kept_beside_the_png_and_go_with_it(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    stored = store.put_png(png.getvalue())
    words, maps = _maps()

    attention.save(
        store, stored.sha256, text="a red qzxv boat", words=words, spans=[(0, 1), (2, 5), (6, 10), (11, 15)], maps=maps
    )

    path = store.attention_path(stored.sha256)
    with np.load(path, allow_pickle=False) as data:
        assert data["maps"].dtype == np.float16
        assert [str(word) for word in data["words"]] == words
    assert path.stat().st_size < 2000
    store.remove(stored.sha256)
    assert not path.exists()


@pytest.mark.parametrize("left", [b"", b"PK\x03\x04 cut short"])
def test_maps_a_crash_left_empty_or_cut_short_read_as_no_maps(tmp_path: Path, left: bytes) -> None:
    store = ImageStore(tmp_path)
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    stored = store.put_png(png.getvalue())
    store.attention_path(stored.sha256).parent.mkdir(parents=True)
    store.attention_path(stored.sha256).write_bytes(left)

    assert attention._load(store, stored.sha256) is None


@pytest.mark.parametrize(
    ("prompt", "chosen", "how", "refined"),
    [
        ("a red qzxv boat", [("qzxv", 6)], "weight", "a red (qzxv:1.3) boat"),
        ("a red qzxv boat, qzxv", [("qzxv", 17)], "weight", "a red qzxv boat, (qzxv:1.3)"),
        ("a red qzxv boat", [("red", 2), ("qzxv", 6)], "weight", "a (red:1.3) (qzxv:1.3) boat"),
        ("a red qzxv boat on the left", [("qzxv", 6)], "earlier", "qzxv, a red boat on the left"),
        ("a red qzxv boat", [("red", 2), ("boat", 11)], "earlier", "red boat, a qzxv"),
    ],
)
def test_refined_prompts_weight_words_up_or_move_them_to_the_front(
    prompt: str, chosen: list[tuple[str, int]], how: attention.Refinement, refined: str
) -> None:
    assert attention.refined_prompt(prompt, prompt, chosen, how) == refined


def test_a_weighted_prompt_is_refined_where_its_words_stand_as_typed() -> None:
    typed = "a (red:1.2) qzxv [boat]"
    plain = "a red qzxv boat"
    assert attention.refined_prompt(typed, plain, [("boat", 11)], "weight") == "a (red:1.2) qzxv [(boat:1.3)]"
    assert attention.refined_prompt(typed, plain, [("qzxv", 6)], "earlier") == "qzxv, a (red:1.2) [boat]"
