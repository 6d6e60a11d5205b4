"""An artist refines a painting twice from the studio form and sees a three-node lineage."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.e2e.conftest import Artist

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


def test_refining_twice_from_the_studio_shows_a_three_node_lineage(artist: Artist) -> None:
    page = artist.page
    page.goto(artist.url + "/")
    page.fill("#seed", "7")
    first = paint_from_the_form(page, "a red barn under a blue sky")

    page.goto(f"{artist.url}/?refine={first}")
    assert page.input_value("#seed") == "7"
    second = paint_from_the_form(page, "a red barn under a stormy sky")

    page.goto(f"{artist.url}/?refine={second}")
    third = paint_from_the_form(page, "a red barn under a stormy sky at dusk")

    page.goto(f"{artist.url}/generations/{third}")
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


A1111_INFOTEXT = (
    "a lighthouse on a rocky cliff at dusk, (dramatic clouds:1.2)\n"
    "Negative prompt: lowres, watermark\n"
    "Steps: 12, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 2837461923, Size: 64x64, Model: v1-5-pruned-emaonly"
)


def load_png(page: Any, path: Path) -> str:
    status = page.locator("[data-role=png-status]")
    page.set_input_files("#png-file", str(path))
    deadline = time.monotonic() + 10
    while not status.inner_text().startswith(("Loaded", "This PNG")) and time.monotonic() < deadline:
        time.sleep(0.1)
    return str(status.inner_text())


def test_a_studio_png_and_an_a1111_png_load_back_into_the_form(artist: Artist, tmp_path: Path) -> None:
    page = artist.page
    page.goto(artist.url + "/")
    page.fill("#seed", "4242")
    page.fill("#negative_prompt", "blurry")
    page.fill("#guidance", "6.5")
    page.select_option("#scheduler", "euler-a")
    painted = paint_from_the_form(page, "a windmill in a tulip field")
    image_url = page.locator(f"#job-{painted} img.job-image").first.get_attribute("src")
    ours = tmp_path / "ours.png"
    ours.write_bytes(page.request.get(artist.url + str(image_url)).body())

    page.goto(artist.url + "/")
    assert load_png(page, ours) == "Loaded the parameters of a studio PNG."
    assert page.input_value("#prompt") == "a windmill in a tulip field"
    assert page.input_value("#negative_prompt") == "blurry"
    assert (page.input_value("#seed"), page.input_value("#steps"), page.input_value("#guidance")) == (
        "4242",
        "2",
        "6.5",
    )
    assert page.input_value("#scheduler") == "euler-a"

    info = PngInfo()
    info.add_text("parameters", A1111_INFOTEXT)
    theirs = tmp_path / "a1111.png"
    Image.new("RGB", (64, 64), (30, 60, 90)).save(theirs, pnginfo=info)
    status = load_png(page, theirs)
    assert status.startswith("Loaded the parameters of an AUTOMATIC1111 PNG")
    assert "v1-5-pruned-emaonly is not installed" in status
    assert page.input_value("#prompt") == "a lighthouse on a rocky cliff at dusk, (dramatic clouds:1.2)"
    assert page.input_value("#negative_prompt") == "lowres, watermark"
    assert (page.input_value("#seed"), page.input_value("#steps"), page.input_value("#guidance")) == (
        "2837461923",
        "12",
        "6.5",
    )
    assert page.input_value("#scheduler") == "dpm++-2m-karras"
    assert (page.input_value("#width"), page.input_value("#height")) == ("64", "64")
