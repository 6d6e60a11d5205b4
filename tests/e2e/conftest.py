"""Fixtures for browser tests: the real server in a background thread, and headless Chromium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from tests.live_server import free_port, running_studio

REPO_ROOT = Path(__file__).resolve().parents[2]
# The repository's models folder; STUDIO_E2E_MODELS_DIR points the test at another one (for
# instance an untrained export of studio-tiny while the real one is still training).
MODELS_DIR = Path(os.environ.get("STUDIO_E2E_MODELS_DIR") or REPO_ROOT / "models")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def e2e_models_dir() -> Path:
    """The folder holding the trained studio-tiny; the browser tests skip, saying so, without it."""
    if not (MODELS_DIR / "studio-tiny" / "model_index.json").is_file():
        pytest.skip(
            f"the trained studio-tiny is not in {MODELS_DIR} (train it with `studio train-tiny`, or point "
            "STUDIO_E2E_MODELS_DIR at a folder holding one); a random stand-in would not test the studio"
        )
    return MODELS_DIR


@pytest.fixture
def live_server(tmp_path: Path, db_url: str) -> Iterator[str]:
    """The studio served by uvicorn on a free port, with its embedded workers and studio-tiny."""
    port = free_port()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        database_url=db_url,
        models_dir=e2e_models_dir(),
        default_model="studio-tiny",
        devices="cpu",
        auth="local",
        host="127.0.0.1",
        port=port,
        start_workers=True,
        preload_default_model=False,
    )
    with running_studio(settings) as url:
        yield url


@pytest.fixture
def browser_page() -> Iterator[object]:
    """A page in headless Chromium (Debian's build at /usr/bin/chromium)."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            yield page
        finally:
            browser.close()
