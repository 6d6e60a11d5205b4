"""The image viewer: a painting opens large in the page, steps through its batch, zooms, downloads and closes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Artist, check_page, wait_until

pytestmark = pytest.mark.slow


def test_a_batch_opens_in_the_viewer_and_steps_through_its_paintings(artist: Artist) -> None:
    page = artist.page
    batch = artist.paint("a lighthouse on a rocky cliff at dusk", seed=11, n_images=4)
    artist.goto(f"/generations/{batch['id']}")

    images = page.locator(".gallery-item img")
    assert images.count() == 4
    for index in range(4):
        image = images.nth(index)
        wait_until(lambda image=image: image.evaluate("img => img.complete && img.naturalWidth > 0"), what="images")
        assert image.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"
        assert image.bounding_box()["width"] >= (256 if not artist.phone else 160)
    check_page(page)

    link = page.locator(".gallery-item > a").nth(1)
    if artist.phone:
        link.tap()
    else:
        link.click()
    viewer = page.locator("dialog.viewer[open]")
    viewer.wait_for(timeout=5_000)
    assert page.url.endswith(f"/generations/{batch['id']}"), "no new tab, no navigation"
    shown = viewer.locator(".viewer-image")
    wait_until(lambda: shown.evaluate("img => img.complete && img.naturalWidth > 0"), what="the viewer's image")
    assert viewer.locator("[data-role=count]").inner_text() == "2 / 4"
    fitted = shown.bounding_box()["width"]
    assert fitted >= min(page.viewport_size["width"], page.viewport_size["height"]) * 0.5, "fitted to the screen"
    assert shown.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"
    second = batch["images"][1]["id"]
    assert viewer.locator("[data-role=download]").get_attribute("href") == f"/api/images/{second}"

    page.keyboard.press("ArrowRight")
    assert viewer.locator("[data-role=count]").inner_text() == "3 / 4"
    viewer.locator("[data-act=prev]").click()
    viewer.locator("[data-act=prev]").click()
    assert viewer.locator("[data-role=count]").inner_text() == "1 / 4"
    assert shown.get_attribute("src") == f"/api/images/{batch['images'][0]['id']}"

    viewer.locator("[data-act=in]").click()
    wait_until(lambda: shown.bounding_box()["width"] > fitted * 1.2, what="the zoom")
    page.keyboard.press("0")
    wait_until(lambda: abs(shown.bounding_box()["width"] - fitted) < 2, what="the fit")
    check_page(page)

    if artist.phone:
        # A finger: a swipe to the left shows the next painting, a double tap zooms in.
        stage = viewer.locator("[data-role=stage]").bounding_box()
        middle = stage["y"] + stage["height"] / 2
        swipe(page, [(stage["x"] + stage["width"] * 0.8, middle), (stage["x"] + stage["width"] * 0.2, middle)])
        assert viewer.locator("[data-role=count]").inner_text() == "2 / 4"
        centre = (stage["x"] + stage["width"] / 2, middle)
        swipe(page, [centre])
        swipe(page, [centre])
        wait_until(lambda: shown.bounding_box()["width"] > fitted * 1.5, what="the double tap's zoom")

    page.keyboard.press("Escape")
    wait_until(lambda: page.locator("dialog.viewer[open]").count() == 0, what="the viewer to close")


def swipe(page: Any, points: list[tuple[float, float]]) -> None:
    """One finger down at the first point, along the others, then up (a tap when there is one point)."""
    touch = page.context.new_cdp_session(page)
    for index, (x, y) in enumerate(points):
        kind = "touchStart" if index == 0 else "touchMove"
        touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [{"x": x, "y": y}]})
    touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    touch.detach()


def test_a_gallery_opens_in_the_viewer_for_a_visitor_through_its_share_link(artist: Artist, visitor: tuple) -> None:
    painted = artist.paint("a windmill in a tulip field", seed=3, n_images=2)
    gallery = artist.api("POST", "/api/galleries", {"title": "Tulips", "visibility": "private"}, status=201)
    for image in painted["images"]:
        artist.api("POST", f"/api/galleries/{gallery['id']}/items", {"image_id": image["id"]}, status=201)
    link = artist.api("POST", f"/api/galleries/{gallery['id']}/share", {}, status=201)

    page, _ = visitor
    page.goto(f"{artist.url}/s/{link['token']}")
    assert page.locator("a[href='/login']").count() >= 1, "a visitor is offered to log in"
    tiles = page.locator(".album-open img")
    assert tiles.count() == 2
    wait_until(lambda: tiles.first.evaluate("img => img.complete && img.naturalWidth > 0"), what="the tiles")
    assert tiles.first.bounding_box()["width"] >= (256 if not artist.phone else 160)
    check_page(page)
    page.locator(".album-open").first.click()
    viewer = page.locator("dialog.viewer[open]")
    viewer.wait_for(timeout=5_000)
    assert viewer.locator("[data-role=count]").inner_text() == "1 / 2"
    page.keyboard.press("ArrowRight")
    assert viewer.locator("[data-role=count]").inner_text() == "2 / 2"
    page.keyboard.press("Escape")
    wait_until(lambda: page.locator("dialog.viewer[open]").count() == 0, what="the viewer to close")
