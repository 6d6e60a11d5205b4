"""Fixtures for browser tests: one real studio per session, headless Chromium, and an artist per test.

Every test runs at a laptop's and a phone's size (``viewport``). The ``artist`` fixture registers a
fresh account, signs a browser context in, and at the end fails the test on any console error or
uncaught exception the pages raised; ``check_page`` fails on sideways scrolling and on serious or
critical axe-core violations.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
# axe-core 4.14.1 (MPL-2.0, see vendor/axe.LICENSE.txt), served to the page from its own origin
# so the studio's Content-Security-Policy (script-src 'self') lets it run.
AXE_JS = Path(__file__).parent / "vendor" / "axe.min.js"
AXE_PATH = "/__e2e__/axe.min.js"
VIEWPORTS: dict[str, dict[str, int]] = {
    "laptop": {"width": 1280, "height": 800},
    "phone": {"width": 390, "height": 844},
}
PASSWORD = "a long enough password"
_names = itertools.count(1)


def e2e_models_dir() -> Path:
    """The folder holding the trained studio-tiny; the browser tests skip, saying so, without it."""
    if not (MODELS_DIR / "studio-tiny" / "model_index.json").is_file():
        pytest.skip(
            f"the trained studio-tiny is not in {MODELS_DIR} (train it with `studio train-tiny`, or point "
            "STUDIO_E2E_MODELS_DIR at a folder holding one); a random stand-in would not test the studio"
        )
    return MODELS_DIR


def e2e_settings(data_dir: Path) -> Settings:
    """A studio that requires accounts (so visitors and share links are real), on SQLite in ``data_dir``."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'studio.db'}",
        models_dir=e2e_models_dir(),
        default_model="studio-tiny",
        devices="cpu",
        auth="required",
        host="127.0.0.1",
        port=free_port(),
        start_workers=True,
        preload_default_model=False,
        # Every test signs up a new artist from the one loopback address.
        register_limit="10000 per hour",
        login_failure_limit="10000 per hour",
    )


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The studio served by uvicorn on a free port, with its embedded workers and studio-tiny, for the session."""
    with running_studio(e2e_settings(tmp_path_factory.mktemp("studio"))) as url:
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's build at /usr/bin/chromium), shared by the session."""
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is not installed: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> str:
    """``laptop`` (1280x800) or ``phone`` (390x844, touch)."""
    name: str = request.param
    return name


@dataclass
class Watch:
    """What went wrong in the pages of one context: console errors and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)
    # Substrings of console errors a test expects (a form refused with 422 logs its status).
    allowed: list[str] = field(default_factory=list)

    def console(self, message: Any) -> None:
        if message.type == "error" and not any(part in message.text for part in self.allowed):
            self.errors.append(f"console: {message.text} ({message.location.get('url', '')})")

    def exception(self, error: Any) -> None:
        self.errors.append(f"uncaught: {error}")


def new_context(browser: Any, base_url: str, viewport: str) -> tuple[Any, Watch]:
    phone = viewport == "phone"
    # Reduced motion: a card fading in as a job ends is half transparent for a quarter second,
    # which axe-core would read as low contrast depending on when it looks.
    context = browser.new_context(
        base_url=base_url,
        viewport=VIEWPORTS[viewport],
        has_touch=phone,
        is_mobile=phone,
        device_scale_factor=1,
        reduced_motion="reduce",
    )
    context.route(
        f"{base_url}{AXE_PATH}", lambda route: route.fulfill(path=str(AXE_JS), content_type="text/javascript")
    )
    watch = Watch()

    def on_page(page: Any) -> None:
        page.on("console", watch.console)
        page.on("pageerror", watch.exception)

    context.on("page", on_page)
    return context, watch


@dataclass
class Artist:
    """A signed-in artist's browser: its page, its account and the JSON API as that account."""

    page: Any
    url: str
    username: str
    csrf: str
    watch: Watch
    viewport: str

    @property
    def phone(self) -> bool:
        return self.viewport == "phone"

    def api(self, method: str, path: str, body: dict[str, Any] | None = None, *, status: int | None = None) -> Any:
        response = self.page.request.fetch(
            self.url + path,
            method=method,
            headers={"X-CSRF-Token": self.csrf, "Content-Type": "application/json"},
            data=json.dumps(body) if body is not None else None,
        )
        if status is not None:
            assert response.status == status, f"{method} {path}: {response.status} {response.text()[:300]}"
        return response.json() if "json" in response.headers.get("content-type", "") else response.text()

    def paint(self, prompt: str, *, wait: bool = True, **params: Any) -> dict[str, Any]:
        """A painting made through the API (2 steps unless told), finished unless ``wait`` is false."""
        accepted = self.api("POST", "/api/generate/prompt", {"prompt": prompt, "steps": 2, **params}, status=202)
        return self.wait(accepted["id"]) if wait else dict(accepted)

    def wait(self, generation_id: int, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            generation: dict[str, Any] = self.api("GET", f"/api/generations/{generation_id}", status=200)
            if generation["status"] in ("succeeded", "failed", "cancelled"):
                assert generation["status"] == "succeeded", generation
                return generation
            time.sleep(0.1)
        pytest.fail(f"generation {generation_id} did not finish within {timeout} s")

    def goto(self, path: str) -> Any:
        response = self.page.goto(self.url + path)
        assert response is not None and response.ok, f"{path}: {response.status if response else 'no answer'}"
        return response


def register(context: Any, base_url: str, username: str) -> str:
    """Signs ``context`` in as a new artist; the session's CSRF token."""
    response = context.request.post(
        base_url + "/api/auth/register",
        data=json.dumps({"username": username, "password": PASSWORD}),
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 201, response.text()
    token: str = response.json()["csrf_token"]
    return token


@pytest.fixture
def artist(browser: Any, live_server: str, viewport: str) -> Iterator[Artist]:
    """A newly registered artist in a fresh browser context at ``viewport``'s size."""
    context, watch = new_context(browser, live_server, viewport)
    username = f"artist{next(_names)}{viewport[0]}"
    csrf = register(context, live_server, username)
    page = context.new_page()
    try:
        yield Artist(page=page, url=live_server, username=username, csrf=csrf, watch=watch, viewport=viewport)
    finally:
        context.close()
    assert not watch.errors, "\n".join(watch.errors)


@pytest.fixture
def visitor(browser: Any, live_server: str, viewport: str) -> Iterator[tuple[Any, Watch]]:
    """A browser page nobody is signed in to, and what it watches."""
    context, watch = new_context(browser, live_server, viewport)
    page = context.new_page()
    try:
        yield page, watch
    finally:
        context.close()
    assert not watch.errors, "\n".join(watch.errors)


def overflow(page: Any) -> int:
    """How many CSS px the page scrolls sideways (0 when it fits)."""
    width: int = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    return width


def axe_violations(page: Any) -> list[str]:
    """Serious and critical axe-core violations of the page as it stands."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(url=AXE_PATH)
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.id + ': ' + v.help + ' [' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ') + ']')"
    )
    return list(found)


def check_page(page: Any) -> None:
    """The page fits its width and axe-core finds nothing serious or critical in it."""
    assert overflow(page) <= 0, f"{page.url} scrolls sideways by {overflow(page)} px"
    violations = axe_violations(page)
    assert not violations, f"{page.url}:\n" + "\n".join(violations)


def wait_until(check: Any, *, timeout: float = 15, what: str = "the page to change") -> None:
    """Polls ``check()`` from the test (wait_for_function evaluates a string, which the CSP refuses)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {what}")
        time.sleep(0.05)
