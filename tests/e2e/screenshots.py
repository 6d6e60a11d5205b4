"""`make screenshots`: every page of a furnished studio at a laptop's and a phone's width, as PNGs.

Run as ``python -m tests.e2e.screenshots [OUT]`` (default build/screenshots); it serves its own
studio with studio-tiny on a free port, paints what the pages show, and writes NAME-WIDTH.png.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORTS, Artist, e2e_settings, new_context, register
from tests.e2e.scenes import artist_pages, furnish, visitor_pages
from tests.live_server import running_studio


def shoot(browser: Any, url: str, out: Path) -> list[str]:
    """Furnishes a studio per width and photographs every page; the console errors seen."""
    errors: list[str] = []
    for viewport, size in VIEWPORTS.items():
        context, watch = new_context(browser, url, viewport)
        username = f"painter{viewport}"
        page = context.new_page()
        artist = Artist(
            page=page, url=url, username=username, csrf=register(context, url, username), watch=watch, viewport=viewport
        )
        scene = furnish(artist)
        for name, path in artist_pages(scene).items():
            page.goto(url + path)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(out / f"{name}-{size['width']}.png"), full_page=True)
        context.close()
        visitor_context, visitor_watch = new_context(browser, url, viewport)
        visitor = visitor_context.new_page()
        for name, path in visitor_pages(scene).items():
            visitor.goto(url + path)
            visitor.wait_for_load_state("networkidle")
            visitor.screenshot(path=str(out / f"{name}-{size['width']}.png"), full_page=True)
        visitor_context.close()
        errors += [f"{viewport}: {error}" for error in watch.errors + visitor_watch.errors]
    return errors


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as data,
        running_studio(e2e_settings(Path(data))) as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        errors = shoot(browser, url, out)
        browser.close()
    for error in errors:
        print(error, file=sys.stderr)
    print(f"screenshots written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("build/screenshots")))
