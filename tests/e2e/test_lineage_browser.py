"""An artist refines a painting twice from the studio form and sees a three-node lineage."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def paint_from_the_form(page: Any, prompt: str) -> int:
    """Fill the prompt of the studio form as it stands, paint, wait for the image; the new id."""
    page.fill("#prompt", prompt)
    page.fill("#steps", "2")
    before = page.locator("#results .job").count()
    page.click("#paint-button")
    deadline = time.monotonic() + 15
    while page.locator("#results .job").count() <= before and time.monotonic() < deadline:
        time.sleep(0.1)
    card = page.locator("#results .job").first
    card.locator("img.job-image").first.wait_for(state="visible", timeout=120_000)
    match = re.match(r"job-(\d+)", card.get_attribute("id") or "")
    assert match, "each card is named after its generation"
    return int(match.group(1))


def test_refining_twice_from_the_studio_shows_a_three_node_lineage(live_server: str, browser_page: Any) -> None:
    page = browser_page
    page.goto(live_server + "/")
    page.fill("#seed", "7")
    first = paint_from_the_form(page, "a red barn under a blue sky")

    page.goto(f"{live_server}/?refine={first}")
    assert page.input_value("#seed") == "7"
    second = paint_from_the_form(page, "a red barn under a stormy sky")

    page.goto(f"{live_server}/?refine={second}")
    third = paint_from_the_form(page, "a red barn under a stormy sky at dusk")

    page.goto(f"{live_server}/generations/{third}")
    page.click(f'a[href="/generations/{third}/lineage"]')
    nodes = page.locator(".lineage-node")
    assert nodes.count() == 3
    assert [int(nodes.nth(i).get_attribute("data-generation-id") or 0) for i in range(3)] == [first, second, third]
    edges = page.locator("[data-role=edge]")
    assert edges.count() == 2
    assert "+stormy" in edges.nth(0).inner_text() and "−blue" in edges.nth(0).inner_text()
    assert "+at" in edges.nth(1).inner_text() and "+dusk" in edges.nth(1).inner_text()
    assert page.locator(".lineage-node.is-focus").get_attribute("data-generation-id") == str(third)
    assert page.locator(".lineage-thumb img").count() == 3

    # Compare the first and the last from the tree, and pick one.
    page.check(f'input[name=ids][value="{first}"]')
    page.check(f'input[name=ids][value="{third}"]')
    page.click("#compare-form button[type=submit]")
    page.locator(".compare-table").wait_for()
    assert page.locator("tr.differs th", has_text="Prompt").count() == 1
    page.locator("[data-prefer]").first.click()
    status = page.locator("[data-role=compare-status]")
    deadline = time.monotonic() + 10
    while not status.inner_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status.inner_text() == "Preference recorded."
