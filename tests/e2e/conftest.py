"""Fixtures for browser tests: the real server in a background thread, and headless Chromium."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from app.config import Settings
from app.main import create_app
from tests.tiny_pipeline import build_tiny_pipeline

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def e2e_models_dir(tmp_path: Path) -> Path:
    """The trained studio-tiny when there is one, else a tiny seeded pipeline under its name."""
    if (MODELS_DIR / "studio-tiny" / "model_index.json").is_file():
        return MODELS_DIR
    root = tmp_path / "models"
    build_tiny_pipeline(root / "studio-tiny", seed=0)
    return root


@contextmanager
def running_studio(settings: Settings) -> Iterator[str]:
    """Serves ``create_app(settings)`` with uvicorn in a background thread until the block ends."""
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the studio server did not start within 30 s")
        time.sleep(0.05)
    try:
        yield f"http://{settings.host}:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def live_server(tmp_path: Path, db_url: str) -> Iterator[str]:
    """The studio served by uvicorn on a free port, with its embedded workers and studio-tiny."""
    port = free_port()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        database_url=db_url,
        models_dir=e2e_models_dir(tmp_path),
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
