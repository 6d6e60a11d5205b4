"""Tests for app.services.images: uploads become rows, and only their owner or an admin sees them."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.db.base import Base
from app.db.models import Image, ImageKind, Role, User
from app.services import images
from app.services.errors import NotFound, UnsupportedMedia
from app.services.storage import ImageStore

MAX_PIXELS = 4096 * 4096


@pytest.fixture
def db() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine, expire_on_commit=False) as session:
        yield session
    engine.dispose()


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def add_user(session: Session, username: str, role: Role = Role.ARTIST) -> User:
    user = User(username=username, password_hash="not-a-real-hash", role=role)
    session.add(user)
    session.commit()
    return user


def jpeg_bytes(size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, (120, 60, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_an_upload_creates_a_png_row_and_file(db: Session, store: ImageStore) -> None:
    alice = add_user(db, "alice")

    image = images.create_upload(db, store, owner=alice, data=jpeg_bytes(), max_pixels=MAX_PIXELS)

    row = db.get(Image, image.id)
    assert row is not None
    assert (row.width, row.height, row.format, row.kind) == (40, 30, "png", ImageKind.UPLOAD)
    assert row.user_id == alice.id and row.generation_id is None
    assert store.exists(row.sha256)
    picture = images.load_pil(store, row)
    assert picture.size == (40, 30) and picture.mode == "RGB"


def test_an_upload_can_be_stored_as_a_mask(db: Session, store: ImageStore) -> None:
    alice = add_user(db, "alice")
    image = images.create_upload(db, store, owner=alice, data=jpeg_bytes(), max_pixels=MAX_PIXELS, kind=ImageKind.MASK)
    assert image.kind == ImageKind.MASK


def test_a_refused_upload_leaves_no_row(db: Session, store: ImageStore) -> None:
    alice = add_user(db, "alice")

    with pytest.raises(UnsupportedMedia):
        images.create_upload(db, store, owner=alice, data=b"GIF89a not allowed", max_pixels=MAX_PIXELS)

    assert db.query(Image).count() == 0


def test_the_owner_and_an_admin_see_an_upload_and_nobody_else(db: Session, store: ImageStore) -> None:
    alice = add_user(db, "alice")
    bob = add_user(db, "bob")
    admin = add_user(db, "root", Role.ADMIN)
    image = images.create_upload(db, store, owner=alice, data=jpeg_bytes(), max_pixels=MAX_PIXELS)

    assert images.get_visible(db, image_id=image.id, user=alice).id == image.id
    assert images.get_visible(db, image_id=image.id, user=admin).id == image.id
    with pytest.raises(NotFound):
        images.get_visible(db, image_id=image.id, user=bob)
    with pytest.raises(NotFound):
        images.get_visible(db, image_id=image.id, user=None)


def test_a_missing_image_and_a_hidden_one_read_the_same(db: Session, store: ImageStore) -> None:
    alice = add_user(db, "alice")
    bob = add_user(db, "bob")
    image = images.create_upload(db, store, owner=alice, data=jpeg_bytes(), max_pixels=MAX_PIXELS)

    with pytest.raises(NotFound) as hidden:
        images.get_visible(db, image_id=image.id, user=bob)
    with pytest.raises(NotFound) as missing:
        images.get_visible(db, image_id=image.id + 1000, user=bob)

    assert hidden.value.message == f"image {image.id} not found"
    assert missing.value.message == f"image {image.id + 1000} not found"
