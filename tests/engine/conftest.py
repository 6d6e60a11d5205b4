"""Engine fixtures: registries over the tiny test models and, when it is trained, studio-tiny."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.registry import ModelRegistry
from tests.tiny_pipeline import TINY, tiny_models

REPO_ROOT = Path(__file__).resolve().parents[2]
STUDIO_TINY = "studio-tiny"
STUDIO_TINY_READY = (REPO_ROOT / "models" / STUDIO_TINY / "model_index.json").is_file()


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test models (``tiny``, ``tiny-inpaint``, ``pickled``), built once per test run."""
    return tiny_models(tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_registry(tiny_models_dir: Path) -> ModelRegistry:
    """One registry per test module, so the tiny pipelines load once per module."""
    return ModelRegistry(tiny_models_dir, cache_size=4)


@pytest.fixture(scope="module")
def studio_tiny_registry() -> ModelRegistry:
    return ModelRegistry(REPO_ROOT / "models", cache_size=1)


@pytest.fixture(
    scope="module",
    params=[
        TINY,
        pytest.param(
            STUDIO_TINY,
            marks=pytest.mark.skipif(
                not STUDIO_TINY_READY, reason="models/studio-tiny is not trained yet (no model_index.json)"
            ),
        ),
    ],
)
def painter(request: pytest.FixtureRequest) -> tuple[ModelRegistry, str]:
    """(registry, model name): the tiny test model, and the real studio-tiny when it exists."""
    name: str = request.param
    if name == TINY:
        return request.getfixturevalue("tiny_registry"), name
    return request.getfixturevalue("studio_tiny_registry"), name
