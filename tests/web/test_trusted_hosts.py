"""Trusted hosts (issue 14, class: DNS rebinding / unauthenticated exposure beyond loopback).

A page on another origin can point a name of its own at 127.0.0.1 and read the studio's answers as
same-origin; its requests carry its own name in Host, so only the names the studio is told answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app import cli
from app.config import Settings, SettingsError, get_settings
from app.main import create_app


@pytest.fixture
def make_client(settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """``make_client(**settings_overrides)``: a started client (the lifespan has migrated the database)."""
    with ExitStack() as stack:
        yield lambda **overrides: stack.enter_context(TestClient(create_app(settings.model_copy(update=overrides))))


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000", "127.0.0.1"])
def test_loopback_names_answer_by_default_on_loopback(make_client: Callable[..., TestClient], host: str) -> None:
    client = make_client(allowed_hosts="", host="127.0.0.1")

    assert client.get("/api/generations", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["rebind.attacker.example", "rebind.attacker.example:8000", "testserver", "", "[::2]"])
def test_a_foreign_host_is_refused_with_400_dns_rebinding(make_client: Callable[..., TestClient], host: str) -> None:
    """DNS rebinding: a foreign Host header reads neither the API, the images nor the history."""
    client = make_client(allowed_hosts="", host="127.0.0.1")

    for path in ("/api/generations", "/history", "/api/images/1", "/healthz"):
        response = client.get(path, headers={"host": host})
        assert response.status_code == 400, (path, response.status_code)
        assert "does not answer to the host name" in response.json()["detail"]
    assert client.post("/api/galleries", json={"title": "x"}, headers={"host": host}).status_code == 400


def test_configured_names_and_subdomains_answer(make_client: Callable[..., TestClient]) -> None:
    client = make_client(allowed_hosts="studio.example.org, *.lan", host="0.0.0.0", auth="local")

    assert client.get("/healthz", headers={"host": "studio.example.org:443"}).status_code != 400
    assert client.get("/healthz", headers={"host": "pi.lan"}).status_code != 400
    assert client.get("/healthz", headers={"host": "lan"}).status_code == 400
    assert client.get("/healthz", headers={"host": "127.0.0.1"}).status_code == 400
    assert client.get("/healthz", headers={"host": "studio.example.org.evil.example"}).status_code == 400


def test_a_star_answers_any_host(make_client: Callable[..., TestClient]) -> None:
    client = make_client(allowed_hosts="*", host="0.0.0.0")

    assert client.get("/healthz", headers={"host": "anything.example"}).status_code != 400


def test_bound_beyond_loopback_without_allowed_hosts_the_studio_refuses_to_start(settings: Settings) -> None:
    """Unauthenticated exposure beyond loopback: no names configured, no server."""
    with pytest.raises(SettingsError, match="set STUDIO_ALLOWED_HOSTS"):
        create_app(settings.model_copy(update={"allowed_hosts": "", "host": "0.0.0.0"}))


def test_studio_serve_says_why_it_does_not_start(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("STUDIO_ALLOWED_HOSTS", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli.app, ["serve", "--host", "0.0.0.0"])
    finally:
        get_settings.cache_clear()

    assert result.exit_code == 2
    assert "not starting" in result.output and "STUDIO_ALLOWED_HOSTS" in result.output
