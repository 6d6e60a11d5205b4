"""A pipeline the registry placed on one device answers its execution device without walking its modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline

from app.engine import execution_device
from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run
from tests.tiny_pipeline import TINY


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Each time a pipeline works out its device by walking its modules (diffusers' ``device``)."""
    walked: list[str] = []
    original = DiffusionPipeline.__dict__["device"]

    def counted(pipeline: DiffusionPipeline) -> torch.device:
        walked.append(type(pipeline).__name__)
        device: torch.device = original.fget(pipeline)
        return device

    monkeypatch.setattr(DiffusionPipeline, "device", property(counted))
    yield walked


def test_a_loaded_pipeline_keeps_its_device(tiny_registry: ModelRegistry, walks: list[str]) -> None:
    pipeline = tiny_registry.pipeline(TINY, "cpu")
    walks.clear()

    assert pipeline._execution_device == torch.device("cpu")
    assert execution_device.kept(pipeline) == torch.device("cpu")
    assert walks == []


def test_a_derived_pipeline_keeps_its_bases_device(tiny_registry: ModelRegistry, walks: list[str]) -> None:
    derived = tiny_registry.pipeline(TINY, "cpu", mode="img2img")
    walks.clear()

    assert derived._execution_device == torch.device("cpu")
    assert walks == []


def test_a_painting_asks_no_walk(tiny_registry: ModelRegistry, walks: list[str]) -> None:
    tiny_registry.pipeline(TINY, "cpu")
    walks.clear()

    result = run(tiny_registry, GenerationSpec(model=TINY, prompt="a red barn", seed=3, steps=2), device="cpu")

    assert len(result.images) == 1
    assert walks == []


def test_a_pipeline_the_studio_did_not_place_is_asked_as_before(
    tiny_registry: ModelRegistry, tiny_models_dir: Path, walks: list[str]
) -> None:
    tiny_registry.pipeline(TINY, "cpu")  # the kept devices' property is installed by now
    # Loaded straight from the folder, as a diffusers user would.
    pipeline = StableDiffusionPipeline.from_pretrained(
        tiny_models_dir / TINY, safety_checker=None, requires_safety_checker=False, local_files_only=True
    )

    assert execution_device.kept(pipeline) is None
    assert pipeline._execution_device == torch.device("cpu")
    assert walks == ["StableDiffusionPipeline"]
