"""Secure cookies (issue 14, class: session cookies sent in clear): the session cookie is ``Secure``
when STUDIO_PUBLIC_URL is https or the request arrived over https (a trusted TLS proxy)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.social.conftest import PASSWORD, Cast


def _login_cookie(client: TestClient) -> str:
    answer = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return answer.headers["set-cookie"].lower()


def test_plain_http_on_a_private_studio_keeps_an_ordinary_cookie(anonymous: TestClient, cast: Cast) -> None:
    cookie = _login_cookie(anonymous)
    assert "httponly" in cookie and "secure" not in cookie


def test_a_request_over_https_gets_a_secure_cookie(settings: Settings, engine: object, cast: Cast) -> None:
    client = TestClient(create_app(settings), base_url="https://testserver")
    assert "; secure" in _login_cookie(client)


def test_a_public_https_studio_marks_every_cookie_secure(settings: Settings, engine: object, cast: Cast) -> None:
    client = TestClient(create_app(settings.model_copy(update={"public_url": "https://studio.example.org"})))
    assert "; secure" in _login_cookie(client)
