"""The project's map (docs/architecture.md) names every module and every route the code has."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"


def _modules() -> list[Path]:
    return sorted(path for path in (ROOT / "app").rglob("*.py") if path.name != "__init__.py")


def _routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        methods = getattr(route, "methods", None)
        if methods is not None and hasattr(route, "path"):
            for method in sorted(methods - {"HEAD"}):
                yield method, prefix + route.path
            continue
        # FastAPI keeps an included router as a wrapper that remembers its prefix.
        context = getattr(route, "include_context", None)
        router = getattr(context, "included_router", None)
        if router is not None:
            yield from _routes(router.routes, prefix + (context.prefix or ""))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("data"), start_workers=False))


def test_the_map_names_every_module() -> None:
    text = DOC.read_text()
    missing = []
    for path in _modules():
        relative = path.relative_to(ROOT).as_posix()
        package = relative.rsplit("/", 1)[0] + "/"
        # A module is named by its path, or by its file name on a line of its package's modules.
        named = (
            relative in text
            or any(package in line and f"`{path.name}`" in line for line in text.splitlines())
            or any(f"`{package}" in line and f"{path.name}`" in line for line in text.splitlines())
        )
        if not named:
            missing.append(relative)
    assert not missing, f"docs/architecture.md does not name: {', '.join(missing)}"


def test_the_map_names_every_route(app: FastAPI) -> None:
    text = DOC.read_text()
    documented = {route for route in _routes(app.router.routes) if not route[1].startswith(("/docs", "/redoc"))}
    documented.discard(("GET", "/openapi.json"))
    missing = sorted(f"{method} {path}" for method, path in documented if f"`{method} {path}`" not in text)
    assert documented, "no routes were found: the walk over FastAPI's routers needs updating"
    assert not missing, f"docs/architecture.md does not list: {', '.join(missing)}"


def test_the_readme_links_the_map_inside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/architecture.md" in readme
    assert "../shared" not in readme
