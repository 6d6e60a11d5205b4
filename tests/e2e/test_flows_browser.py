"""The artist's other flows in a real browser: accounts, history filters, grids, matrices, walks, style, sharing."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import PASSWORD, Artist, Watch, check_page, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def base_url(live_server: str) -> str:
    return live_server


def open_menu(page: Any) -> None:
    toggle = page.locator(".menu-toggle")
    if toggle.is_visible():
        toggle.click()


def test_an_artist_registers_logs_out_and_back_in(visitor: tuple[Any, Watch], base_url: str) -> None:
    page, watch = visitor
    watch.allowed += ["status of 401", "status of 422", "status of 400"]
    name = f"newcomer{id(page) % 100000}"
    page.goto(base_url + "/register")
    check_page(page)
    page.fill("#username", name)
    page.fill("#password", PASSWORD)
    page.fill("#password_again", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))
    assert page.locator("#compose-title").is_visible()
    open_menu(page)
    assert name in page.locator("#main-nav").inner_text()
    page.click("#main-nav button:has-text('Log out')")
    page.wait_for_url(re.compile(r".*/login.*"))

    page.fill("#username", name)
    page.fill("#password", "not the password")
    page.click("form[action='/login'] button[type=submit]")
    assert page.locator("[role=alert]").first.is_visible()
    assert page.input_value("#username") == name, "the name typed stays"
    check_page(page)
    page.fill("#password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(re.compile(r".*/$"))
    open_menu(page)
    assert name in page.locator("#main-nav").inner_text()


def test_history_filters_narrow_and_say_when_nothing_matches(artist: Artist) -> None:
    page = artist.page
    artist.paint("a red barn under a blue sky", seed=1)
    artist.paint("a lighthouse at dusk", seed=2)
    artist.goto("/history")
    assert page.locator(".tile").count() == 2
    page.fill("input[name=q]", "barn")
    page.click(".filters button[type=submit]")
    wait_until(lambda: "q=barn" in page.url, what="the filtered history")
    assert page.locator(".tile").count() == 1
    assert "barn" in page.locator(".tile-prompt").inner_text()
    check_page(page)
    page.fill("input[name=q]", "zebra")
    page.click(".filters button[type=submit]")
    wait_until(lambda: "q=zebra" in page.url, what="the filtered history")
    assert "No painting matches these filters" in page.locator(".empty-state").inner_text()
    page.click("text=Show everything")
    assert page.locator(".tile").count() == 2


def test_seed_grid_prompt_matrix_and_walk_from_a_painting_page(artist: Artist) -> None:
    page = artist.page
    first = artist.paint("a red barn under a blue sky", seed=4)
    other = artist.paint("a red barn under a stormy sky", seed=9)
    artist.goto(f"/generations/{first['id']}")

    page.fill("#grid-count", "2")
    page.click("text=Paint a seed grid")
    page.wait_for_url(re.compile(r".*/batches/.+"))
    assert page.locator(".batch-cell").count() == 2
    check_page(page)

    artist.goto(f"/generations/{first['id']}")
    page.fill("#matrix-replace", "barn")
    page.fill("#matrix-alternatives", "castle")
    page.click("text=Paint a prompt matrix")
    page.wait_for_url(re.compile(r".*/batches/.+"))
    assert page.locator(".batch-cell").count() == 2
    assert "castle" in page.locator(".batch-grid").inner_text()

    artist.goto(f"/generations/{first['id']}")
    page.fill("#interpolate-to", str(other["id"]))
    page.fill("#interpolate-frames", "3")
    page.click("button:has-text('Interpolate')")
    page.wait_for_url(re.compile(r".*/generations/\d+$"))
    walk_id = int(page.url.rsplit("/", 1)[1])
    artist.wait(walk_id)
    artist.goto(f"/generations/{walk_id}")
    assert page.locator(".walk-animation img").count() == 1
    assert "Interpolated from" in page.locator(".page-head").inner_text()
    assert page.locator(".gallery-item img").count() == 3
    check_page(page)


def test_use_as_style_paints_in_the_look_of_a_painting(artist: Artist) -> None:
    page = artist.page
    source = artist.paint("a field of sunflowers, thick impasto", seed=3)
    artist.goto(f"/generations/{source['id']}")
    page.locator("[data-use-style]").first.click()
    page.wait_for_url(re.compile(r".*/(\?.*)?$"))
    assert page.locator("[data-style-refs] input[name=style_image_id]").count() == 1
    page.fill("#prompt", "a quiet harbour")
    page.fill("#steps", "2")
    before = page.locator("#results .job").count()
    page.click("#paint-button")
    wait_until(lambda: page.locator("#results .job").count() > before, what="the new card")
    card = page.locator("#results .job").first
    card.locator("img.job-image").first.wait_for(state="visible", timeout=60_000)
    generation_id = int((card.get_attribute("id") or "job-0").split("-")[1])
    assert artist.wait(generation_id)["mode"] == "style"
    check_page(page)


def test_a_painting_shared_opens_for_a_visitor_until_its_link_is_revoked(
    artist: Artist, visitor: tuple[Any, Watch]
) -> None:
    page = artist.page
    painted = artist.paint("a windmill in a tulip field", seed=6)
    artist.goto(f"/generations/{painted['id']}")
    page.click("button[data-open-dialog=share-dialog]")
    page.click("#share-dialog button:has-text('New link')")
    page.wait_for_url(re.compile(r".*shared=1.*"))
    link = page.locator("#share-dialog .share-url").first.input_value()
    check_page(page)

    stranger, watch = visitor
    stranger.goto(link)
    shown = stranger.locator(".album-open img")
    wait_until(lambda: shown.first.evaluate("img => img.complete && img.naturalWidth > 0"), what="the painting")
    assert shown.first.bounding_box()["width"] >= (256 if not artist.phone else 300)
    assert shown.first.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"
    preview = stranger.locator("meta[property='og:image']").get_attribute("content")
    assert preview and preview.endswith("/preview.png")
    check_page(stranger)

    # Revoking asks first, in one step.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#share-dialog button:has-text('Revoke')")
    wait_until(lambda: page.locator("#share-dialog .share-url").count() == 0, what="the link to go")
    watch.allowed.append("status of 404")
    stranger.goto(link)
    assert stranger.locator("main a[href='/login']").count() == 1


def test_a_gallery_painting_moves_up_in_place_and_stays_moved(artist: Artist) -> None:
    page = artist.page
    painted = artist.paint("three apples on a table", seed=8, n_images=3)
    gallery = artist.api("POST", "/api/galleries", {"title": "Apples"}, status=201)
    ids = [image["id"] for image in painted["images"]]
    for image_id in ids:
        artist.api("POST", f"/api/galleries/{gallery['id']}/items", {"image_id": image_id}, status=201)
    artist.goto(f"/galleries/{gallery['id']}")

    def order() -> list[str]:
        return [page.locator(".album-grid .album-item").nth(i).get_attribute("id") or "" for i in range(3)]

    assert order() == [f"item-{image_id}" for image_id in ids]
    tile = page.locator(f"#item-{ids[2]}")
    tile.locator("summary").click()
    tile.locator("button[value=up]").click()
    wait_until(lambda: order()[1] == f"item-{ids[2]}", what="the painting to move")
    check_page(page)
    page.reload()
    assert order() == [f"item-{ids[0]}", f"item-{ids[2]}", f"item-{ids[1]}"]


def test_vary_names_its_step_and_a_pick_between_two_is_recorded_and_exportable(artist: Artist) -> None:
    page = artist.page
    painted = artist.paint("a bowl of pears", seed=12, n_images=2)
    artist.goto(f"/generations/{painted['id']}")
    page.click("form[action$='/vary'] button")
    page.wait_for_url(re.compile(r".*/generations/\d+$"))
    assert f"A variation of #{painted['id']}" in page.locator(".page-head").inner_text()
    assert "Refines" not in page.locator(".page-head").inner_text()

    artist.goto(f"/pick?generation={painted['id']}")
    check_page(page)
    page.locator(".pick-button").first.click()
    page.wait_for_url(re.compile(r".*/pick\?generation=.*offset=1"))
    export = page.locator("a[href='/api/preferences/export']")
    assert export.is_visible()
    exported = page.request.get(artist.url + "/api/preferences/export").text().strip().splitlines()
    assert len(exported) == 1 and "a bowl of pears" in exported[0]
