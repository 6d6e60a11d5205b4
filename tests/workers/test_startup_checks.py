"""Start-up checks of scaled mode: a studio that several processes serve, or that other machines
reach, refuses to start without STUDIO_SECRET_KEY; ``studio worker`` refuses outside scaled mode."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from app import cli
from app.config import Settings, SettingsError, get_settings
from app.main import create_app


def without_secret(settings: Settings, **overrides: object) -> Settings:
    values = settings.model_dump(exclude={"secret_key"}) | overrides
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_scaled_mode_refuses_to_start_without_a_secret_key(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="STUDIO_SECRET_KEY") as refused:
        create_app(without_secret(settings, queue="celery"))

    assert "each other's login sessions" in str(refused.value)


def test_a_server_bound_beyond_loopback_refuses_to_start_without_a_secret_key(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="STUDIO_SECRET_KEY") as refused:
        create_app(without_secret(settings, host="0.0.0.0", allowed_hosts="studio.example.org"))

    assert "STUDIO_HOST=0.0.0.0" in str(refused.value)


def test_the_embedded_studio_on_loopback_starts_with_a_secret_of_its_own(settings: Settings) -> None:
    own = without_secret(settings)

    assert create_app(own).state.settings.secret_key


def test_scaled_mode_starts_with_a_secret_key(settings: Settings) -> None:
    assert create_app(settings.model_copy(update={"queue": "celery"})).state.settings.queue == "celery"


def test_studio_worker_refuses_outside_scaled_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_QUEUE", "embedded")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli.app, ["worker"])
    finally:
        get_settings.cache_clear()

    assert result.exit_code == 2
    assert "STUDIO_QUEUE=celery" in result.output
