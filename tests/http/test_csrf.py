"""CSRF: every form route refuses a post without the session's token, and pages and the API share one token."""

from __future__ import annotations

import importlib
import pkgutil
import re

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import func, select

import app.web
from app.db.models import Gallery

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def form_routes() -> list[str]:
    """Every state-changing route of every HTML router in app.web, its path parameters filled with 1."""
    paths = []
    for module in pkgutil.iter_modules(app.web.__path__):
        router = getattr(importlib.import_module(f"app.web.{module.name}"), "router", None)
        for route in router.routes if router is not None else []:
            if isinstance(route, APIRoute) and route.methods & UNSAFE:
                paths.append(re.sub(r"\{[^}]+\}", "1", route.path))
    return sorted(paths)


def page_token(client: TestClient) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
    assert match, "the studio form carries the session's token"
    return match.group(1)


def test_every_form_route_refuses_a_post_without_the_sessions_token(client: TestClient, app: FastAPI) -> None:
    paths = form_routes()
    assert "/partials/generate" in paths and "/galleries" in paths and "/login" in paths
    page_token(client)  # the session now has a token, which the posts below do not carry

    for path in paths:
        for fields in ({}, {"csrf_token": "forged"}):
            response = client.post(path, data={**fields, "title": "Sneaky"}, follow_redirects=False)

            # The login form answers 403, as the JSON API does; every other form 422.
            assert response.status_code == (403 if path == "/login" else 422), (path, fields, response.status_code)
            assert "this form has expired" in response.text, path
    with app.state.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Gallery)) == 0


def test_forms_take_the_token_as_a_field_or_as_htmxs_header(client: TestClient) -> None:
    token = page_token(client)

    by_field = client.post("/galleries", data={"title": "Field", "csrf_token": token}, follow_redirects=False)
    by_header = client.post(
        "/galleries", data={"title": "Header"}, headers={"X-CSRF-Token": token}, follow_redirects=False
    )

    assert by_field.status_code == by_header.status_code == 303


def test_pages_and_the_api_hand_out_the_same_token(client: TestClient) -> None:
    token = page_token(client)

    assert client.get("/api/auth/csrf").json()["csrf_token"] == token
    assert f'<meta name="csrf-token" content="{token}">' in client.get("/history").text
