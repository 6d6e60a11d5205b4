"""Rate limits on logging in and registering (issue 14, class: credential stuffing / argon2 CPU exhaustion).

After at most 10 failed logins for one username or from one address in 15 minutes the studio
answers 429 with Retry-After, before it spends a password hash; sign-ups are limited per address.
"""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from limits.storage import MemoryStorage, RedisStorage

from app.config import Settings
from app.http.limits import AttemptLimiter
from app.main import create_app
from app.services import users
from tests.social.conftest import PASSWORD, Cast

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def _login(client: TestClient, username: str, password: str) -> int:
    return client.post("/api/auth/login", json={"username": username, "password": password}).status_code


def _retry_after(response: object) -> int:
    value = int(response.headers["retry-after"])  # type: ignore[attr-defined]
    assert 0 < value <= 15 * 60
    return value


@pytest.fixture
def hash_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The usernames whose password was checked (each check is a deliberately slow argon2 hash)."""
    checked: list[str] = []
    authenticate = users.authenticate

    def counting(session: object, *, username: str, password: str) -> object:
        checked.append(username)
        return authenticate(session, username=username, password=password)  # type: ignore[arg-type]

    monkeypatch.setattr(users, "authenticate", counting)
    return checked


def test_ten_failed_logins_for_one_username_then_429_even_with_the_right_password(
    anonymous: TestClient, cast: Cast, hash_checks: list[str]
) -> None:
    """Password guessing against one account: the 11th try is refused without checking the password."""
    assert [_login(anonymous, "alice", f"guess {n}!") for n in range(10)] == [401] * 10

    refused = anonymous.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})

    assert refused.status_code == 429
    assert "too many failed logins" in refused.json()["detail"] and "wait" in refused.json()["detail"]
    _retry_after(refused)
    assert len(hash_checks) == 10, "the refused attempt spent no password hash"


def test_failures_from_one_address_across_usernames_are_limited(anonymous: TestClient, cast: Cast) -> None:
    """Credential stuffing: many usernames from one address."""
    assert {_login(anonymous, f"user{n}", "not the password") for n in range(10)} == {401}

    assert _login(anonymous, "bob", PASSWORD) == 429


def test_failures_for_one_username_from_many_addresses_are_limited(app: FastAPI, cast: Cast) -> None:
    """A botnet guessing one account: each address fails once, the account still closes for a while."""
    for n in range(10):
        assert _login(TestClient(app, client=(f"10.0.0.{n}", 4000)), "alice", "wrong pass") == 401

    assert _login(TestClient(app, client=("10.0.1.1", 4000)), "alice", PASSWORD) == 429
    assert _login(TestClient(app, client=("10.0.1.1", 4000)), "bob", PASSWORD) == 200, "other accounts still log in"


def test_a_success_starts_the_accounts_count_again(app: FastAPI, cast: Cast) -> None:
    for n in range(9):
        assert _login(TestClient(app, client=(f"10.0.0.{n}", 4000)), "alice", "wrong pass") == 401
    assert _login(TestClient(app, client=("10.0.2.1", 4000)), "alice", PASSWORD) == 200

    for n in range(9):
        assert _login(TestClient(app, client=(f"10.0.3.{n}", 4000)), "alice", "wrong pass") == 401
    assert _login(TestClient(app, client=("10.0.4.1", 4000)), "alice", PASSWORD) == 200


def test_the_login_page_answers_429_with_retry_after(anonymous: TestClient, cast: Cast) -> None:
    page = anonymous.get("/login")
    token = CSRF_INPUT.search(page.text)
    assert token
    form = {"csrf_token": token.group(1), "username": "alice", "password": "wrong pass"}
    assert [anonymous.post("/login", data=form).status_code for _ in range(10)] == [401] * 10

    refused = anonymous.post("/login", data={**form, "password": PASSWORD})

    assert refused.status_code == 429
    assert "too many failed logins" in refused.text
    assert 'value="alice"' in refused.text, "the form comes back as typed"
    _retry_after(refused)


def test_registration_is_limited_per_address(anonymous: TestClient, app: FastAPI) -> None:
    """Sign-up floods: each new account costs a hash and a row; one address gets a handful an hour."""
    for n in range(10):
        answer = anonymous.post("/api/auth/register", json={"username": f"new{n}", "password": "a long password"})
        assert answer.status_code == 201, answer.text

    refused = anonymous.post("/api/auth/register", json={"username": "new10", "password": "a long password"})

    assert refused.status_code == 429
    assert "too many new accounts from this address" in refused.json()["detail"]
    assert int(refused.headers["retry-after"]) > 0
    elsewhere = TestClient(app, client=("10.9.9.9", 4000))
    assert (
        elsewhere.post("/api/auth/register", json={"username": "new11", "password": "a long password"}).status_code
        == 201
    )


def test_the_register_page_answers_429(settings: Settings, engine: object) -> None:
    client = TestClient(create_app(settings.model_copy(update={"register_limit": "1 per hour"})))
    token = CSRF_INPUT.search(client.get("/register").text)
    assert token
    form = {"csrf_token": token.group(1), "password": "a long password", "password_again": "a long password"}
    assert client.post("/register", data={**form, "username": "first"}, follow_redirects=False).status_code == 303
    client.cookies.clear()
    token = CSRF_INPUT.search(client.get("/register").text)
    assert token

    refused = client.post("/register", data={**form, "csrf_token": token.group(1), "username": "second"})

    assert refused.status_code == 429 and "too many new accounts" in refused.text
    assert int(refused.headers["retry-after"]) > 0


def test_limits_are_kept_in_memory_embedded_and_in_redis_when_scaled(settings: Settings) -> None:
    """Several web processes behind a balancer must share the counts: Redis when STUDIO_QUEUE=celery."""
    embedded = AttemptLimiter.from_settings(settings)
    scaled = AttemptLimiter.from_settings(settings.model_copy(update={"queue": "celery"}))
    assert isinstance(embedded.storage, MemoryStorage)
    assert isinstance(scaled.storage, RedisStorage)

    username = f"redis-{uuid.uuid4().hex}"
    other_process = AttemptLimiter.from_settings(settings.model_copy(update={"queue": "celery"}))
    try:
        for _ in range(10):
            scaled.login_failed(username=username, address=f"addr-{username}")
        with pytest.raises(Exception, match="too many failed logins") as refused:
            other_process.check_login(username=username, address="elsewhere")
        assert getattr(refused.value, "retry_after", 0) > 0
    finally:
        scaled.login_succeeded(username=username)
        scaled.limiter.clear(scaled.login_failures, "login-address", f"addr-{username}")


def test_limits_come_from_settings(settings: Settings) -> None:
    limiter = AttemptLimiter.from_settings(settings.model_copy(update={"login_failure_limit": "2 per minute"}))
    limiter.login_failed(username="a", address="x")
    limiter.check_login(username="a", address="y")
    limiter.login_failed(username="a", address="x")
    with pytest.raises(Exception, match="wait a minute"):
        limiter.check_login(username="a", address="y")
