"""Content Credentials in the browser: a painting's page, a shared painting, a gallery tile, the check page."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Artist, Watch, check_page

pytestmark = pytest.mark.slow


def test_content_credentials_show_where_people_look(artist: Artist, visitor: tuple[Any, Watch]) -> None:
    painting = artist.paint("a red boat on the left", seed=3)
    [image] = painting["images"]

    artist.goto(f"/generations/{painting['id']}")
    credentials = artist.page.locator(".detail-credentials")
    credentials.get_by_text("Signed by this studio").wait_for()
    assert painting["model"] in credentials.inner_text()
    check_page(artist.page)

    artist.goto("/provenance")
    check_page(artist.page)

    shared = artist.api("POST", f"/api/generations/{painting['id']}/share", {}, status=201)
    gallery = artist.api("POST", "/api/galleries", {"title": "Boats", "visibility": "public"}, status=201)
    artist.api("POST", f"/api/galleries/{gallery['id']}/items", {"image_id": image["id"]}, status=201)
    shared_gallery = artist.api("POST", f"/api/galleries/{gallery['id']}/share", {}, status=201)
    page, _ = visitor

    page.goto(f"{artist.url}/s/{shared['token']}")
    page.locator(".share-credentials").get_by_text("Signed by this studio").wait_for()
    assert (
        page.locator(f".share-credentials a[href='/s/{shared['token']}/images/{image['id']}'][download]").count() == 1
    )
    check_page(page)

    page.goto(f"{artist.url}/s/{shared_gallery['token']}")
    tile = page.locator(".tile-credentials")
    tile.locator("summary").click()
    tile.get_by_text("Signed by this studio").wait_for()
    check_page(page)
