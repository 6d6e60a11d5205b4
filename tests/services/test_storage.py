"""Tests for app.services.storage: content-addressed PNGs and cached WebP thumbnails."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngImageFile

from app.services.errors import InvalidInput, NotFound
from app.services.imageio import encode_png
from app.services.metadata import read_png_parameters
from app.services.storage import ImageStore


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def stored_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def test_same_bytes_go_to_the_same_path_and_one_file(store: ImageStore) -> None:
    png = encode_png(Image.new("RGB", (16, 16), (9, 99, 199)))

    first = store.put_png(png)
    second = store.put_png(png)

    sha = hashlib.sha256(png).hexdigest()
    assert first.sha256 == second.sha256 == sha
    assert first.path == second.path == store.root / sha[:2] / sha[2:4] / f"{sha}.png"
    assert stored_files(store.root) == [first.path]  # no temporary file left behind either
    assert store.read(sha) == png
    assert store.exists(sha)


def test_different_pictures_get_different_files(store: ImageStore) -> None:
    one = store.put_image(Image.new("RGB", (8, 8), (0, 0, 0)))
    two = store.put_image(Image.new("RGB", (8, 8), (255, 255, 255)))

    assert one.sha256 != two.sha256
    assert len(stored_files(store.root)) == 2


def test_put_image_reports_size_and_keeps_text_chunks(store: ImageStore) -> None:
    chunks = {
        "parameters": "a fox\nSteps: 2, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 24x16",
        "studio": '{"seed": 1}',
    }

    stored = store.put_image(Image.new("RGB", (24, 16)), text_chunks=chunks)

    assert (stored.width, stored.height) == (24, 16)
    with Image.open(stored.path) as reread:
        assert isinstance(reread, PngImageFile)
        reread.load()
        assert reread.text == chunks
    assert read_png_parameters(store.read(stored.sha256)) == {"seed": 1}


@pytest.mark.parametrize(
    "bad",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "a" * 63,
        "a" * 65,
        "A" * 64,
        "g" * 64,
        ("a" * 62) + "/x",
        ("a" * 64) + "\n",
        "",
    ],
)
def test_anything_but_a_sha256_is_refused_as_a_name(store: ImageStore, bad: str) -> None:
    with pytest.raises(InvalidInput):
        store.path(bad)
    with pytest.raises(InvalidInput):
        store.read(bad)
    with pytest.raises(InvalidInput):
        store.thumbnail_path(bad)


def test_a_missing_file_is_not_found(store: ImageStore) -> None:
    missing = "0" * 64
    assert not store.exists(missing)
    with pytest.raises(NotFound):
        store.read(missing)
    with pytest.raises(NotFound):
        store.thumbnail_path(missing)


def test_only_pngs_are_stored(store: ImageStore) -> None:
    with pytest.raises(InvalidInput):
        store.put_png(b"GIF89a...")


def test_thumbnail_is_webp_made_once_and_reused(store: ImageStore) -> None:
    stored = store.put_image(Image.new("RGB", (600, 300), (200, 40, 40)))

    thumb = store.thumbnail_path(stored.sha256)

    assert thumb == store.root / "thumbs" / stored.sha256[:2] / f"{stored.sha256}.webp"
    with Image.open(io.BytesIO(thumb.read_bytes())) as picture:
        assert picture.format == "WEBP"
        assert picture.size == (256, 128)
    # Once made, the file is served as it is: were it rendered again, these bytes would be gone.
    thumb.write_bytes(b"cached")
    assert store.thumbnail_path(stored.sha256) == thumb
    assert thumb.read_bytes() == b"cached"
    assert not list(thumb.parent.glob(".tmp-*"))


def test_paintings_are_synced_to_disk_and_what_can_be_made_again_is_not(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    monkeypatch.setattr("app.services.storage.os.fsync", synced.append)
    stored = store.put_image(Image.new("RGB", (40, 20), (10, 90, 200)))
    assert len(synced) == 1  # the PNG, before any row may point at it

    store.thumbnail_path(stored.sha256)
    store.put_attention(stored.sha256, b"maps")
    assert len(synced) == 1
    assert store.attention_path(stored.sha256).read_bytes() == b"maps"


def test_an_empty_thumbnail_left_by_a_crash_is_made_again(store: ImageStore) -> None:
    stored = store.put_image(Image.new("RGB", (600, 300), (200, 40, 40)))
    thumb = store.thumbnail_path(stored.sha256)
    thumb.write_bytes(b"")  # what an unsynced file may hold after a crash

    assert store.thumbnail_path(stored.sha256) == thumb
    with Image.open(io.BytesIO(thumb.read_bytes())) as picture:
        assert picture.format == "WEBP" and picture.size == (256, 128)
