"""Typos are answered in place: the message by the form, what was typed kept, the signed-in menu intact."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Artist, check_page, wait_until

pytestmark = pytest.mark.slow


def signed_in_menu(artist: Artist) -> bool:
    menu = artist.page.locator("#main-nav")
    return menu.locator("a[href='/login']").count() == 0 and menu.locator("a[href='/history']").count() == 1


def test_a_matrix_word_missing_from_the_prompt_and_a_walk_to_a_missing_painting_are_answered_in_place(
    artist: Artist,
) -> None:
    page = artist.page
    # Answered in place (200): the browser logs no failed request for a typo.
    painted = artist.paint("a red barn under a blue sky", seed=5)
    artist.goto(f"/generations/{painted['id']}")

    page.fill("#matrix-replace", "castle")
    page.fill("#matrix-alternatives", "tower, keep")
    page.click("text=Paint a prompt matrix")
    error = page.locator("#matrix-error[role=alert]")
    error.wait_for(timeout=10_000)
    assert "castle" in error.inner_text()
    assert page.url.endswith(f"/partials/generations/{painted['id']}/grid")
    assert page.input_value("#matrix-replace") == "castle"
    assert page.input_value("#matrix-alternatives") == "tower, keep"
    wait_until(lambda: page.evaluate("() => document.activeElement.id") == "matrix-replace", what="the focus")
    assert signed_in_menu(artist)
    check_page(page)

    page.fill("#interpolate-to", "999999")
    page.fill("#interpolate-frames", "5")
    page.click("button:has-text('Interpolate')")
    error = page.locator("#interpolate-error[role=alert]")
    error.wait_for(timeout=10_000)
    assert "999999" in error.inner_text() or "not found" in error.inner_text()
    assert page.input_value("#interpolate-to") == "999999"
    assert page.input_value("#interpolate-frames") == "5"
    assert page.locator(".prompt-title").inner_text() == "a red barn under a blue sky"
    assert signed_in_menu(artist)
    check_page(page)


def test_compare_selected_with_too_few_ticks_says_so_by_the_button(artist: Artist) -> None:
    page = artist.page
    first = artist.paint("a windmill in a tulip field", seed=1)
    second_id = artist.api("POST", f"/api/generations/{first['id']}/vary", {}, status=202)["id"]
    artist.wait(second_id)
    artist.goto(f"/generations/{second_id}/lineage")

    page.check(f"input[name=ids][value='{second_id}']")
    page.click("#compare-form button[type=submit]")
    message = page.locator("[data-role=compare-error]")
    assert message.is_visible() and "1 ticked" in message.inner_text()
    assert page.url.endswith(f"/generations/{second_id}/lineage")
    assert page.is_checked(f"input[name=ids][value='{second_id}']"), "the ticks stay"
    check_page(page)

    # Without JavaScript's check, the server answers the lineage page again, ticks kept.
    artist.goto(f"/compare?ids={second_id}&from={second_id}")
    assert "between 2 and 4" in page.locator("[data-role=compare-error]").inner_text()
    assert page.is_checked(f"input[name=ids][value='{second_id}']")
    assert signed_in_menu(artist)
    check_page(page)


def test_a_gallery_without_a_title_is_answered_in_place(artist: Artist) -> None:
    page = artist.page
    artist.goto("/galleries")
    page.fill(".album-new input[name=title]", "   ")
    page.fill(".album-new input[name=description]", "blue things")
    page.select_option(".album-new select[name=visibility]", "public")
    page.click(".album-new button[type=submit]")
    error = page.locator("#gallery-error[role=alert]")
    error.wait_for(timeout=10_000)
    assert "title" in error.inner_text()
    assert page.input_value(".album-new input[name=description]") == "blue things"
    assert page.input_value(".album-new select[name=visibility]") == "public"
    wait_until(lambda: page.evaluate("() => document.activeElement.name") == "title", what="the focus on the title")
    assert signed_in_menu(artist)
    check_page(page)
