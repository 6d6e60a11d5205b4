"""Who sees what: owner, another artist, an admin, an anonymous visitor, and valid, revoked and
expired share links, for generations, images, thumbnails and galleries, over JSON and HTML."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import User, Visibility
from app.services import galleries, sharing
from tests.social.conftest import Cast, Output


@dataclass
class World:
    output: Output
    gallery_id: int
    valid: str
    revoked: str
    expired: str
    generation_link: str


@pytest.fixture
def world(session: Session, cast: Cast, make_output: Callable[..., Output]) -> World:
    output = make_output(cast.alice)
    gallery = galleries.create(session, owner=cast.alice, title="Private barns", visibility=Visibility.PRIVATE)
    galleries.add_item(session, gallery, user=cast.alice, image_id=output.image.id, caption="the red one")
    valid = sharing.share_gallery(session, gallery=gallery, user=cast.alice)
    revoked = sharing.share_gallery(session, gallery=gallery, user=cast.alice)
    sharing.revoke(session, token=revoked.token, user=cast.alice)
    expired = sharing.share_gallery(session, gallery=gallery, user=cast.alice, expires_in=timedelta(hours=1))
    expired.expires_at = utcnow() - timedelta(minutes=1)
    session.commit()
    generation_link = sharing.share_generation(session, generation=output.generation, user=cast.alice)
    return World(output, gallery.id, valid.token, revoked.token, expired.token, generation_link.token)


def direct_routes(world: World) -> list[str]:
    g, i, p = world.output.generation.id, world.output.image.id, world.gallery_id
    return [
        f"/api/generations/{g}",
        f"/api/images/{i}",
        f"/api/images/{i}/thumb",
        f"/api/images/{i}/feedback",
        f"/api/galleries/{p}",
        f"/api/galleries/{p}/download",
        f"/generations/{g}",
        f"/galleries/{p}",
        f"/galleries/{p}/download",
    ]


def share_routes(token: str, image_id: int, *, gallery: bool = True) -> list[str]:
    routes = [f"/s/{token}", f"/s/{token}/images/{image_id}", f"/s/{token}/images/{image_id}/thumb"]
    return [*routes, f"/s/{token}/download"] if gallery else routes


@pytest.mark.parametrize(
    ("who", "expected"),
    [("alice", 200), ("root", 200), ("bob", 404), ("anonymous", 404)],
    ids=["owner", "admin", "other-artist", "anonymous"],
)
def test_private_resources_answer_404_to_everyone_but_owner_and_admin(
    who: str,
    expected: int,
    world: World,
    cast: Cast,
    browser: Callable[[User], TestClient],
    anonymous: TestClient,
) -> None:
    client = anonymous if who == "anonymous" else browser(getattr(cast, "admin" if who == "root" else who))
    for path in direct_routes(world):
        assert client.get(path).status_code == expected, path


def test_a_valid_share_link_opens_the_gallery_and_its_images_logged_out(world: World, anonymous: TestClient) -> None:
    image_id = world.output.image.id
    for path in share_routes(world.valid, image_id):
        assert anonymous.get(path).status_code == 200, path
    page = anonymous.get(f"/s/{world.valid}").text
    assert "Private barns" in page and "the red one" in page
    # The link opens this gallery only: the same image by id, and other images, stay hidden.
    assert anonymous.get(f"/api/images/{image_id}").status_code == 404
    assert anonymous.get(f"/s/{world.valid}/images/{image_id + 1000}").status_code == 404


def test_a_generation_share_link_opens_that_generation_only(
    world: World, anonymous: TestClient, cast: Cast, make_output: Callable[..., Output]
) -> None:
    other = make_output(cast.alice)
    for path in share_routes(world.generation_link, world.output.image.id, gallery=False):
        assert anonymous.get(path).status_code == 200, path
    assert anonymous.get(f"/s/{world.generation_link}/images/{other.image.id}").status_code == 404
    assert anonymous.get(f"/s/{world.generation_link}/download").status_code == 404


@pytest.mark.parametrize("link", ["revoked", "expired", "unknown"])
def test_revoked_expired_and_unknown_links_answer_404(link: str, world: World, anonymous: TestClient) -> None:
    token = getattr(world, link) if link != "unknown" else "x" * 32
    for path in share_routes(token, world.output.image.id):
        assert anonymous.get(path).status_code == 404, path


def test_another_artist_cannot_change_what_is_not_theirs(
    world: World, cast: Cast, browser: Callable[[User], TestClient], make_output: Callable[..., Output]
) -> None:
    bob = browser(cast.bob)
    p, i = world.gallery_id, world.output.image.id
    assert bob.patch(f"/api/galleries/{p}", json={"title": "Mine now"}).status_code == 404
    assert bob.delete(f"/api/galleries/{p}").status_code == 404
    assert bob.delete(f"/api/galleries/{p}/items/{i}").status_code == 404
    assert bob.post(f"/api/galleries/{p}/share").status_code == 404
    assert bob.delete(f"/api/share/{world.valid}").status_code == 404
    assert bob.post(f"/api/images/{i}/feedback", json={"rating": 1}).status_code == 404
    assert bob.post(f"/api/generations/{world.output.generation.id}/share").status_code == 404
    bobs_gallery = bob.post("/api/galleries", json={"title": "Bob's"}).json()["id"]
    assert bob.post(f"/api/galleries/{bobs_gallery}/items", json={"image_id": i}).status_code == 404
    assert browser(cast.alice).get(f"/api/galleries/{p}").json()["title"] == "Private barns"
    assert browser(cast.alice).get(f"/s/{world.valid}").status_code == 200


def test_public_galleries_open_by_id_unlisted_ones_by_their_link_and_only_public_ones_are_explored(
    session: Session, world: World, cast: Cast, browser: Callable[[User], TestClient], anonymous: TestClient
) -> None:
    alice, bob = browser(cast.alice), browser(cast.bob)
    p, i = world.gallery_id, world.output.image.id
    unlisted = alice.patch(f"/api/galleries/{p}", json={"visibility": "unlisted"})
    assert unlisted.status_code == 200
    assert bob.get(f"/api/galleries/{p}").status_code == 404, "an unlisted gallery is not found by counting"
    assert bob.get(f"/api/images/{i}/thumb").status_code == 404
    assert bob.get(f"{unlisted.json()['link']}/images/{i}/thumb").status_code == 200
    assert bob.get("/api/explore").json()["items"] == []
    assert alice.patch(f"/api/galleries/{p}", json={"visibility": "public"}).status_code == 200
    assert [g["id"] for g in bob.get("/api/explore").json()["items"]] == [p]
    assert "Private barns" in bob.get("/explore").text
    assert bob.get(f"/generations/{world.output.generation.id}").status_code == 404, "the generation stays private"
    assert anonymous.get(f"/api/galleries/{p}").status_code == 404, "login is required to browse"
    assert anonymous.get("/explore").status_code == 303
