"""Accounts: register, log in and out, sessions, CSRF, Bearer tokens and the login gate."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app import cli
from app.config import Settings, get_settings
from app.db.models import ApiToken, Role, User
from app.main import create_app
from app.services import users
from tests.social.conftest import PASSWORD, Cast


def test_register_logs_in_with_an_httponly_samesite_cookie_and_stores_an_argon2_hash(
    anonymous: TestClient, session: Session
) -> None:
    answer = anonymous.post("/api/auth/register", json={"username": "carol", "password": "a long password"})
    assert answer.status_code == 201
    assert answer.json()["username"] == "carol" and answer.json()["role"] == "artist"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert anonymous.get("/api/auth/me").json()["username"] == "carol"
    stored = users.get_by_username(session, "carol")
    assert stored is not None and stored.password_hash.startswith("$argon2")


def test_register_refuses_a_taken_name_and_a_short_password(anonymous: TestClient, cast: Cast) -> None:
    assert anonymous.post("/api/auth/register", json={"username": "alice", "password": "whatever1"}).status_code == 409
    short = anonymous.post("/api/auth/register", json={"username": "dave", "password": "short"})
    assert short.status_code == 422 and "at least 8" in short.json()["detail"]


def test_login_with_the_right_password_then_logout_ends_the_session(anonymous: TestClient, cast: Cast) -> None:
    assert anonymous.post("/api/auth/login", json={"username": "alice", "password": "wrong one!"}).status_code == 401
    assert anonymous.post("/api/auth/login", json={"username": "nobody", "password": PASSWORD}).status_code == 401
    answer = anonymous.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert answer.status_code == 200
    token = answer.json()["csrf_token"]
    assert anonymous.get("/api/auth/me").json()["username"] == "alice"
    assert anonymous.post("/api/auth/logout").status_code == 403, "logout without its CSRF token is refused"
    assert anonymous.post("/api/auth/logout", headers={"X-CSRF-Token": token}).status_code == 204
    assert anonymous.get("/api/auth/me").status_code == 401


def test_required_mode_answers_401_to_json_and_redirects_pages_to_login(anonymous: TestClient) -> None:
    assert anonymous.get("/api/generations").status_code == 401
    assert anonymous.get("/api/galleries").status_code == 401
    assert anonymous.get("/api/models").status_code == 401
    page = anonymous.get("/history")
    assert page.status_code == 303 and page.headers["location"].startswith("/login?next=%2Fhistory")
    htmx = anonymous.get("/partials/history", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["hx-redirect"].startswith("/login")
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/static/css/studio.css").status_code == 200


def test_cookie_session_json_changes_need_the_csrf_header(browser: Callable[[User], TestClient], cast: Cast) -> None:
    client = browser(cast.alice)
    without = client.post("/api/galleries", json={"title": "Barns"}, headers={"X-CSRF-Token": ""})
    assert without.status_code == 403 and "CSRF" in without.json()["detail"]
    wrong = client.post("/api/galleries", json={"title": "Barns"}, headers={"X-CSRF-Token": "forged"})
    assert wrong.status_code == 403
    assert client.post("/api/galleries", json={"title": "Barns"}).status_code == 201
    assert client.get("/api/galleries", headers={"X-CSRF-Token": ""}).status_code == 200, "reads need no token"


def test_bearer_tokens_work_without_csrf_are_stored_hashed_and_stop_when_revoked(
    app: FastAPI, browser: Callable[[User], TestClient], cast: Cast, session: Session
) -> None:
    made = browser(cast.alice).post("/api/tokens", json={"name": "my script"})
    assert made.status_code == 201
    clear = made.json()["token"]
    stored = session.scalars(select(ApiToken)).one()
    assert stored.token_hash != clear and clear not in stored.token_hash

    script = TestClient(app, headers={"Authorization": f"Bearer {clear}"})
    assert script.get("/api/auth/me").json()["username"] == "alice"
    assert script.post("/api/galleries", json={"title": "From a script"}).status_code == 201
    listed = script.get("/api/tokens").json()
    assert listed[0]["name"] == "my script" and listed[0]["last_used_at"] is not None
    assert "token" not in listed[0]

    assert browser(cast.bob).delete(f"/api/tokens/{made.json()['id']}").status_code == 404, "not bob's token"
    assert script.delete(f"/api/tokens/{made.json()['id']}").status_code == 204
    assert script.get("/api/auth/me").status_code == 401
    bogus = TestClient(app, headers={"Authorization": "Bearer pst_not-a-token"})
    assert bogus.get("/api/galleries").status_code == 401


def test_local_mode_scripts_act_as_the_local_artist_without_csrf_but_browsers_need_it(
    settings: Settings, engine: object
) -> None:
    app = create_app(settings.model_copy(update={"auth": "local"}))
    script = TestClient(app)
    assert script.post("/api/galleries", json={"title": "Local"}).status_code == 201
    assert script.get("/api/auth/me").json()["username"] == "local"
    cross_site = script.post("/api/galleries", json={"title": "Evil"}, headers={"Origin": "https://evil.example"})
    assert cross_site.status_code == 403

    exposed = create_app(settings.model_copy(update={"auth": "local", "host": "0.0.0.0"}))
    assert TestClient(exposed).post("/api/galleries", json={"title": "Open"}).status_code == 403


def test_cli_creates_an_admin_that_can_log_in(
    settings: Settings, anonymous: TestClient, monkeypatch: pytest.MonkeyPatch, session: Session
) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("STUDIO_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("STUDIO_DATABASE_URL", settings.sqlalchemy_url)
    try:
        result = CliRunner().invoke(cli.app, ["users", "create", "erin", "--admin", "--password", "erins password"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "created admin erin" in result.output
    erin = users.get_by_username(session, "erin")
    assert erin is not None and erin.role == Role.ADMIN
    assert anonymous.post("/api/auth/login", json={"username": "erin", "password": "erins password"}).status_code == 200
