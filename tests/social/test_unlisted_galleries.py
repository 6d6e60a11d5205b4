"""Unguessable unlisted galleries (issue 14, class: enumeration of unlisted items by counting ids).

An unlisted gallery opens at /g/{slug} (128 random bits) for anyone signed in who holds the link;
by its numeric id (page, API, ZIP, its images) it opens to its owner only.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from io import BytesIO

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.db.models import Gallery, User, Visibility
from app.services import galleries
from tests.social.conftest import Cast, Output


@pytest.fixture
def unlisted(session: Session, cast: Cast, make_output: Callable[..., Output]) -> tuple[Gallery, Output]:
    output = make_output(cast.alice)
    gallery = galleries.create(session, owner=cast.alice, title="Barns by link", visibility=Visibility.UNLISTED)
    galleries.add_item(session, gallery, user=cast.alice, image_id=output.image.id, caption="the red one")
    return gallery, output


def test_counting_ids_finds_no_unlisted_gallery(
    unlisted: tuple[Gallery, Output], cast: Cast, browser: Callable[[User], TestClient]
) -> None:
    gallery, output = unlisted
    bob = browser(cast.bob)
    for path in (
        f"/api/galleries/{gallery.id}",
        f"/api/galleries/{gallery.id}/download",
        f"/galleries/{gallery.id}",
        f"/galleries/{gallery.id}/download",
        f"/api/images/{output.image.id}",
        f"/api/images/{output.image.id}/thumb",
    ):
        assert bob.get(path).status_code == 404, path
    assert bob.post(f"/api/images/{output.image.id}/feedback", json={"rating": 5}).status_code == 404


def test_the_link_opens_it_to_anyone_signed_in(
    unlisted: tuple[Gallery, Output], cast: Cast, browser: Callable[[User], TestClient]
) -> None:
    gallery, output = unlisted
    alice, bob = browser(cast.alice), browser(cast.bob)
    link = alice.get(f"/api/galleries/{gallery.id}").json()["link"]
    assert link == f"/g/{gallery.slug}" and len(gallery.slug) >= 22
    assert f"/g/{gallery.slug}" in alice.get(f"/galleries/{gallery.id}").text, "the owner's page shows the link"

    page = bob.get(link)
    assert page.status_code == 200 and "Barns by link" in page.text and "the red one" in page.text
    assert f'src="{link}/images/{output.image.id}/thumb"' in page.text
    assert bob.get(f"{link}/images/{output.image.id}").headers["content-type"] == "image/png"
    assert bob.get(f"{link}/images/{output.image.id}/thumb").status_code == 200
    archive = zipfile.ZipFile(BytesIO(bob.get(f"{link}/download").content))
    assert len(archive.namelist()) == 1


def test_the_link_opens_only_its_own_images_and_not_once_private(
    session: Session,
    unlisted: tuple[Gallery, Output],
    cast: Cast,
    browser: Callable[[User], TestClient],
    make_output: Callable[..., Output],
    anonymous: TestClient,
) -> None:
    gallery, _ = unlisted
    other = make_output(cast.alice)
    bob = browser(cast.bob)
    link = f"/g/{gallery.slug}"
    assert bob.get(f"{link}/images/{other.image.id}").status_code == 404, "an image outside the gallery"
    assert bob.get("/g/not-the-slug").status_code == 404
    assert anonymous.get(link).status_code == 303, "signed-in people only, as before"

    galleries.update(session, gallery, visibility=Visibility.PRIVATE)

    refused = bob.get(link)
    assert refused.status_code == 404 and "made private or deleted" in refused.text
    assert browser(cast.alice).get(link).status_code == 200, "its owner still opens it"


def test_every_gallery_gets_its_own_random_slug(session: Session, cast: Cast) -> None:
    made = [galleries.create(session, owner=cast.alice, title=f"g{n}") for n in range(20)]
    assert len({gallery.slug for gallery in made}) == 20
