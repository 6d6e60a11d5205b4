"""Family fixtures: tiny random builds of every family in one models folder, and an app over them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.families.builders import SD1, build_all


@pytest.fixture(scope="session")
def family_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per family (``fam-sd1`` ... ``fam-zimage``), built once per test run."""
    return build_all(tmp_path_factory.mktemp("family-models"))


@pytest.fixture(scope="module")
def family_client(family_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app with a CPU worker over the family models, shared by a module so each model loads once."""
    data_dir = tmp_path_factory.mktemp("family-app")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        database_url=f"sqlite:///{data_dir / 'studio.db'}",
        models_dir=family_models_dir,
        default_model=SD1,
        devices="cpu",
        start_workers=True,
        preload_default_model=False,
        pipeline_cache_size=8,
        poll_seconds=0.05,
        heartbeat_seconds=0.2,
        auth="local",
        allowed_hosts="127.0.0.1,localhost,::1,testserver",
    )
    with TestClient(create_app(settings)) as client:
        yield client
