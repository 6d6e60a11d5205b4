"""Every page of a furnished studio, signed in and not, at a laptop's and a phone's size: it fits, axe passes it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Artist, Watch, check_page
from tests.e2e.scenes import artist_pages, furnish, visitor_pages

pytestmark = pytest.mark.slow


def test_every_page_fits_and_passes_axe_signed_in_and_as_a_visitor(artist: Artist, visitor: tuple[Any, Watch]) -> None:
    scene = furnish(artist)
    # The missing painting's page answers 404, which the browser logs; it must still keep the menu.
    artist.watch.allowed.append("status of 404")
    for name, path in artist_pages(scene).items():
        artist.page.goto(artist.url + path)
        check_page(artist.page)
        if artist.phone:
            assert artist.page.locator(".menu-toggle").is_visible(), f"{name}: the menu folds on a phone"
            assert not artist.page.locator("#main-nav").is_visible()
            artist.page.locator(".menu-toggle").click()
            assert artist.page.locator("#main-nav a[href='/history']").is_visible()
            check_page(artist.page)
        else:
            assert artist.page.locator("#main-nav a[href='/history']").is_visible(), name
        assert artist.page.locator("#main-nav a[href='/login']").count() == 0, f"{name}: the signed-in menu"

    page, _ = visitor
    for name, path in visitor_pages(scene).items():
        page.goto(artist.url + path)
        check_page(page)
        assert page.locator("a[href='/history']").count() == 0, f"{name}: a visitor has no history"

    # A revoked link answers 404 and offers the visitor to log in, not a history they do not have.
    visitor[1].allowed.append("status of 404")
    artist.api("DELETE", f"/api/share/{scene.share_token}")
    page.goto(f"{artist.url}/s/{scene.share_token}")
    assert page.locator("main a[href='/login']").count() == 1
    assert page.locator("a[href='/history']").count() == 0
    check_page(page)
