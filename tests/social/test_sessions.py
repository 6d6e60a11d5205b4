"""Sessions that end (issue 14, class: session replay after logout, session fixation, local-mode logout).

A login session carries the account's session version; logging out bumps it, so a cookie saved
before the logout signs nobody in, on this browser or any other. In local mode a browser that
logged out is anonymous (the login page), not the built-in admin ``local``.
"""

from __future__ import annotations

import base64
import json
import re

from fastapi import FastAPI
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import User
from app.main import create_app
from tests.social.conftest import PASSWORD, Cast

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def _log_in(client: TestClient, username: str = "alice") -> str:
    answer = client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["csrf_token"])


def _page_token(client: TestClient, path: str) -> str:
    match = CSRF_INPUT.search(client.get(path).text)
    assert match, path
    return match.group(1)


def test_a_cookie_saved_before_logout_signs_nobody_in(app: FastAPI, cast: Cast) -> None:
    """Session replay: the attacker kept a copy of the cookie; after logout it is worth nothing."""
    client = TestClient(app)
    token = _log_in(client)
    saved = client.cookies["session"]
    assert client.post("/api/auth/logout", headers={"X-CSRF-Token": token}).status_code == 204

    replay = TestClient(app)
    replay.cookies.set("session", saved)

    assert replay.get("/api/auth/me").status_code == 401
    assert replay.post("/api/galleries", json={"title": "x"}, headers={"X-CSRF-Token": token}).status_code in (401, 403)


def test_logout_ends_the_accounts_sessions_on_every_browser(app: FastAPI, cast: Cast) -> None:
    """Log out everywhere: the session version is the account's, so the laptop's logout ends the phone's too."""
    laptop, phone = TestClient(app), TestClient(app)
    token = _log_in(laptop)
    _log_in(phone)
    assert phone.get("/api/auth/me").json()["username"] == "alice"

    assert laptop.post("/api/auth/logout", headers={"X-CSRF-Token": token}).status_code == 204

    assert phone.get("/api/auth/me").status_code == 401
    _log_in(phone)
    assert phone.get("/api/auth/me").json()["username"] == "alice", "logging in again works"


def test_the_session_rotates_at_login(app: FastAPI, cast: Cast) -> None:
    """Session fixation: whatever session a browser held before login is replaced, CSRF token included."""
    client = TestClient(app)
    before_token = client.get("/api/auth/csrf").json()["csrf_token"]
    planted = client.cookies["session"]

    token = _log_in(client)

    assert token != before_token
    assert client.cookies["session"] != planted
    stale = TestClient(app)
    stale.cookies.set("session", planted)
    assert stale.get("/api/auth/me").status_code == 401, "the planted cookie did not become alice's session"


def test_a_session_from_before_versions_ends_at_the_first_logout(
    app: FastAPI, settings: Settings, session: Session, cast: Cast
) -> None:
    old = TestClient(app)
    payload = base64.b64encode(json.dumps({"user_id": cast.alice.id}).encode())
    old.cookies.set("session", TimestampSigner(settings.secret_key).sign(payload).decode())
    assert old.get("/api/auth/me").json()["username"] == "alice"

    other = TestClient(app)
    other.post("/api/auth/logout", headers={"X-CSRF-Token": _log_in(other)})

    assert old.get("/api/auth/me").status_code == 401
    session.expire_all()
    user = session.get(User, cast.alice.id)
    assert user is not None and user.session_version == 1


def test_in_local_mode_logging_out_leads_to_the_login_page_not_the_local_admin(
    settings: Settings, engine: object, cast: Cast
) -> None:
    """Local mode: after "Log out" the browser is anonymous; it does not become the admin ``local``."""
    client = TestClient(create_app(settings.model_copy(update={"auth": "local"})), follow_redirects=False)
    assert client.get("/api/auth/me").json()["username"] == "local", "no session: the local artist"
    token = _log_in(client)
    studio = client.get("/")
    assert studio.status_code == 200 and '<span class="muted" title="signed in">alice</span>' in studio.text

    logout = client.post("/logout", data={"csrf_token": token})

    assert logout.status_code == 303 and logout.headers["location"] == "/login"
    assert client.get("/api/auth/me").status_code == 401
    page = client.get("/")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert client.get("/admin").status_code == 303
    login = client.get("/login")
    assert "Continue as the local artist" in login.text
    assert 'title="signed in"' not in login.text

    back = client.post("/login/local", data={"csrf_token": _page_token(client, "/login")})
    assert back.status_code == 303
    assert client.get("/api/auth/me").json()["username"] == "local"


def test_continuing_as_the_local_artist_exists_only_in_local_mode(anonymous: TestClient) -> None:
    page = anonymous.get("/login")
    assert "Continue as the local artist" not in page.text
    refused = anonymous.post("/login/local", data={"csrf_token": _page_token(anonymous, "/login")})
    assert refused.status_code in (303, 404)
    assert refused.headers.get("location", "/login").startswith("/login")
    assert anonymous.get("/api/auth/me").status_code == 401
