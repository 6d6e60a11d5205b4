"""GPU-ready settings, checked without a GPU: dtypes per family, the memory-bounded cache, VAE tiling, offload."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from app.engine import registry as registry_module
from app.engine import runner as runner_module
from app.engine.families import family_named
from app.engine.registry import ModelRegistry, _Warm, dtype_for
from tests.tiny_pipeline import TINY


def test_each_family_runs_in_its_own_precision_on_cuda_and_float32_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)

    assert dtype_for("cpu", family_named("flux")) == torch.float32
    assert dtype_for("cuda:0", family_named("sd1")) == torch.float16
    assert dtype_for("cuda:0", family_named("sdxl")) == torch.float16
    assert dtype_for("cuda:0", family_named("flux")) == torch.bfloat16
    assert dtype_for("cuda:0", family_named("zimage")) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert dtype_for("cuda:0", family_named("flux")) == torch.float16


def test_on_cuda_the_warm_cache_evicts_the_oldest_until_the_next_model_fits(
    tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(tiny_models_dir, cache_size=1)
    spec = registry.spec(TINY)
    needed = registry_module.weights_bytes(spec) + registry_module._CUDA_HEADROOM
    cache: OrderedDict[str, _Warm] = OrderedDict((name, _Warm(base=None)) for name in ("old", "middle", "recent"))
    freed = iter([0, needed // 2, needed])  # free memory after each eviction
    monkeypatch.setattr(registry_module, "_free_cuda_bytes", lambda device: next(freed))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)

    registry._make_room(cache, "cuda:0", spec)

    # Not by count (cache_size is 1): two went, the most recent stays because the model now fits.
    assert list(cache) == ["recent"]


def test_on_the_cpu_the_warm_cache_keeps_cache_size_models(tiny_models_dir: Path) -> None:
    registry = ModelRegistry(tiny_models_dir, cache_size=2)
    cache: OrderedDict[str, _Warm] = OrderedDict((name, _Warm(base=None)) for name in ("a", "b", "c"))

    registry._make_room(cache, "cpu", registry.spec(TINY))

    assert list(cache) == ["c"]


def test_the_vae_decodes_in_tiles_on_cuda_only_above_the_size(tiny_registry: ModelRegistry) -> None:
    pipeline = tiny_registry.pipeline(TINY, "cpu")
    try:
        runner_module._vae_tiling(pipeline, "cuda:0", 2048 * 2048)
        assert pipeline.vae.use_tiling is True
        runner_module._vae_tiling(pipeline, "cuda:0", 1024 * 1024)
        assert pipeline.vae.use_tiling is False
        runner_module._vae_tiling(pipeline, "cpu", 2048 * 2048)
        assert pipeline.vae.use_tiling is False
    finally:
        pipeline.vae.disable_tiling()


def test_low_vram_offloads_on_cuda_instead_of_moving_the_whole_model(
    tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    monkeypatch.setattr(registry_module, "_offload", lambda pipeline, device: calls.append(("offload", device)))
    monkeypatch.setattr(registry_module, "dtype_for", lambda device, family=None: torch.float32)
    registry = ModelRegistry(tiny_models_dir, low_vram=True)

    pipeline: Any = registry._load(registry.spec(TINY), "cuda:0")

    assert calls == [("offload", "cuda:0")]
    assert pipeline.unet.device.type == "cpu"


def test_model_offload_falls_back_to_group_offloading_without_accelerate() -> None:
    done: list[str] = []

    def needs_accelerate(**kwargs: Any) -> None:
        raise ImportError("accelerate is not installed")

    pipeline = SimpleNamespace(
        enable_model_cpu_offload=needs_accelerate,
        enable_group_offload=lambda **kwargs: done.append(str(kwargs["onload_device"])),
    )

    registry_module._offload(pipeline, "cuda:0")  # type: ignore[arg-type]

    assert done == ["cuda:0"]
