"""Composing jobs: what a request leaves out comes from the model's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.db.models import Mode
from app.engine.catalog import ModelCatalog
from app.params import DEFAULT_SCHEDULER, ParameterFields
from app.services.compose import new_generation
from tests.model_folders import config_only_folder


@pytest.fixture
def catalog(tmp_path: Path) -> ModelCatalog:
    config_only_folder(tmp_path, "quick", _studio_default_steps=10, _studio_default_scheduler="euler")
    config_only_folder(tmp_path, "plain")
    return ModelCatalog(tmp_path)


def _composed(catalog: ModelCatalog, **request: object) -> tuple[int, str]:
    new = new_generation(
        ParameterFields.model_validate({"prompt": "a red boat", **request}),
        mode=Mode.TXT2IMG,
        catalog=catalog,
        default_model="quick",
    )
    return new.steps, new.scheduler


def test_a_request_naming_no_schedule_gets_the_folders_own(catalog: ModelCatalog) -> None:
    assert _composed(catalog) == (10, "euler")
    assert _composed(catalog, model="plain") == (20, DEFAULT_SCHEDULER)


def test_what_a_request_names_is_kept_and_default_steps_come_only_with_the_default_scheduler(
    catalog: ModelCatalog,
) -> None:
    assert _composed(catalog, steps=30, scheduler="ddim") == (30, "ddim")
    # Steps alone: the folder's scheduler at the asked steps.
    assert _composed(catalog, steps=30) == (30, "euler")
    # A scheduler alone: its usual 20 steps, not the 10 the folder chose for its own scheduler.
    assert _composed(catalog, scheduler="dpm++-2m") == (20, "dpm++-2m")
