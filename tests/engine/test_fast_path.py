"""The GPU fast path (STUDIO_COMPILE): a no-op that paints the same on the CPU; on CUDA (mocked where it must be)
channels-last, fused QKV, one compile per model and a warm-up at its default size; LoRAs still reach a fused UNet."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from app.config import Settings
from app.engine import fast_path
from app.engine import registry as registry_module
from app.engine.loras import LoraUse
from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run
from tests.tiny_lora import build_tiny_lora
from tests.tiny_pipeline import TINY


def _paint(registry: ModelRegistry, **overrides: Any) -> np.ndarray:
    values: dict[str, Any] = {
        "model": TINY,
        "prompt": "a red boat",
        "seed": 3,
        "steps": 2,
        "width": 64,
        "height": 64,
        "scheduler": "ddim",
    }
    values.update(overrides)
    [image] = run(registry, GenerationSpec(**values), device="cpu").images
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _compiles(pipeline: Any, monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Records the modes the UNet is compiled with instead of compiling it (inductor needs CUDA for this test)."""
    modes: list[str | None] = []
    monkeypatch.setattr(pipeline.unet, "compile", lambda mode=None, **kwargs: modes.append(mode))
    return modes


@pytest.fixture(scope="module")
def lora_models(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fast-path-models")
    shutil.copytree(tiny_models_dir / TINY, root / TINY)
    build_tiny_lora(root / TINY, root / "loras" / "ink.safetensors")
    return root


def test_studio_compile_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STUDIO_COMPILE", raising=False)
    monkeypatch.delenv("STUDIO_COMPILE_MODE", raising=False)
    assert (Settings().compile, Settings().compile_mode) == (False, "max-autotune-no-cudagraphs")

    monkeypatch.setenv("STUDIO_COMPILE", "1")
    monkeypatch.setenv("STUDIO_COMPILE_MODE", "reduce-overhead")

    assert (Settings().compile, Settings().compile_mode) == (True, "reduce-overhead")


def test_the_worker_s_registry_gets_the_compile_settings(settings: Settings) -> None:
    from app.workers.jobs import build_job_context

    context = build_job_context(
        settings.model_copy(update={"compile": True, "compile_mode": "max-autotune"}),
        session_factory=None,  # type: ignore[arg-type]
        store=None,  # type: ignore[arg-type]
        bus=None,  # type: ignore[arg-type]
    )

    assert (context.registry.compile, context.registry.compile_mode) == (True, "max-autotune")


def test_on_the_cpu_compile_changes_nothing_and_paints_the_same_picture(tiny_models_dir: Path) -> None:
    plain = ModelRegistry(tiny_models_dir)
    compiled = ModelRegistry(tiny_models_dir, compile=True)

    pipeline: Any = compiled.pipeline(TINY, "cpu")

    assert pipeline.unet._compiled_call_impl is None
    assert not getattr(pipeline.unet, "_studio_fused_qkv", False)
    assert getattr(pipeline, "_studio_compiled", None) is None
    assert pipeline.unet.conv_in.weight.is_contiguous()
    assert np.array_equal(_paint(compiled), _paint(plain))


def test_on_cuda_a_loading_model_gets_the_fast_path_at_its_default_size(
    tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared: list[tuple[str, str, int, int]] = []
    monkeypatch.setattr(
        registry_module.fast_path,
        "prepare",
        lambda pipeline, device, *, mode, width, height: prepared.append((device, mode, width, height)),
    )
    monkeypatch.setattr(registry_module, "dtype_for", lambda device, family=None: torch.float32)
    monkeypatch.setattr(DiffusionPipeline, "to", lambda self, *args, **kwargs: self)
    registry = ModelRegistry(tiny_models_dir, compile=True, compile_mode="reduce-overhead")
    spec = registry.spec(TINY)

    registry._load(spec, "cuda:0")

    assert prepared == [("cuda:0", "reduce-overhead", spec.default_width, spec.default_height)]


def test_low_vram_offloading_is_not_compiled(tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepared: list[str] = []
    monkeypatch.setattr(
        registry_module.fast_path, "prepare", lambda pipeline, device, **kwargs: prepared.append(device)
    )
    monkeypatch.setattr(registry_module, "_offload", lambda pipeline, device: None)
    monkeypatch.setattr(registry_module, "dtype_for", lambda device, family=None: torch.float32)
    registry = ModelRegistry(tiny_models_dir, compile=True, low_vram=True)

    registry._load(registry.spec(TINY), "cuda:0")

    assert prepared == []


def test_prepare_on_cuda_goes_channels_last_fuses_compiles_once_and_warms_up(
    tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(tiny_models_dir)  # its own pipeline: this one is changed for good
    before = _paint(registry)
    pipeline: Any = registry.pipeline(TINY, "cpu")
    modes = _compiles(pipeline, monkeypatch)
    calls: list[int] = []
    pipeline.unet.register_forward_hook(lambda module, args, output: calls.append(1))

    done = fast_path.prepare(pipeline, "cuda:0", mode="max-autotune-no-cudagraphs", width=64, height=64)

    assert done is True
    assert modes == ["max-autotune-no-cudagraphs"]
    assert pipeline.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert pipeline.unet._studio_fused_qkv is True
    assert registry.pipeline(TINY, "cpu", "img2img")._studio_compiled == "max-autotune-no-cudagraphs"
    assert any(hasattr(module, "to_qkv") for module in pipeline.unet.modules())
    assert len(calls) == fast_path.WARM_UP_STEPS  # the warm-up ran the denoiser once per step (no CFG batch twice)
    # Fused projections and channels-last are the same arithmetic: the picture stays (within float rounding).
    assert np.abs(_paint(registry) - before).max() <= 2


def test_default_mode_compiles_without_a_mode_and_the_cpu_is_left_alone(
    tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline: Any = ModelRegistry(tiny_models_dir).pipeline(TINY, "cpu")
    modes = _compiles(pipeline, monkeypatch)

    assert fast_path.prepare(pipeline, "cpu", mode="default", width=64, height=64) is False
    assert modes == []
    assert fast_path.prepare(pipeline, "cuda:0", mode="default", width=64, height=64, warm=False) is True
    assert modes == [None]


def test_a_failed_warm_up_leaves_a_working_pipeline(tiny_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline: Any = ModelRegistry(tiny_models_dir).pipeline(TINY, "cpu")
    _compiles(pipeline, monkeypatch)

    def fails(*args: Any, **kwargs: Any) -> float:
        raise RuntimeError("inductor could not compile")

    monkeypatch.setattr(fast_path, "warm_up", fails)

    assert fast_path.prepare(pipeline, "cuda:0", mode="max-autotune-no-cudagraphs", width=64, height=64) is True


def test_a_lora_paints_on_a_fused_unet_as_on_a_plain_one(lora_models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = ModelRegistry(lora_models)
    fused = ModelRegistry(lora_models)
    pipeline: Any = fused.pipeline(TINY, "cpu")
    _compiles(pipeline, monkeypatch)
    fast_path.prepare(pipeline, "cuda:0", mode="max-autotune-no-cudagraphs", width=64, height=64, warm=False)
    fused_processors = {name: type(processor) for name, processor in pipeline.unet.attn_processors.items()}
    ink = [LoraUse(name="ink", weight=1.0)]

    with_lora = _paint(fused, loras=ink)

    # The fused processors skip to_q/to_k/to_v, where the LoRA sits; the call attends through them instead.
    assert np.abs(with_lora - _paint(plain, loras=ink)).max() <= 2
    assert np.abs(with_lora - _paint(fused)).max() > 10
    assert {name: type(processor) for name, processor in pipeline.unet.attn_processors.items()} == fused_processors
    # The image-to-image pipeline derived from it shares the fused UNet, and the LoRA reaches it there too.
    repaint: dict[str, Any] = {"mode": "img2img", "init_image": Image.new("RGB", (64, 64), (200, 40, 40))}
    repaint.update(strength=0.8, loras=ink)
    assert np.abs(_paint(fused, **repaint) - _paint(plain, **repaint)).max() <= 2


def test_plain_attention_leaves_an_unfused_pipeline_as_it_is(tiny_models_dir: Path) -> None:
    pipeline: Any = ModelRegistry(tiny_models_dir).pipeline(TINY, "cpu")
    processors = dict(pipeline.unet.attn_processors)

    with fast_path.plain_attention(pipeline, active=True):
        assert dict(pipeline.unet.attn_processors) == processors


def test_warm_up_paints_latents_at_the_asked_size(tiny_models_dir: Path) -> None:
    pipeline: Any = ModelRegistry(tiny_models_dir).pipeline(TINY, "cpu")
    shapes: list[tuple[int, ...]] = []
    pipeline.unet.register_forward_hook(lambda module, args, output: shapes.append(tuple(args[0].shape)))

    seconds = fast_path.warm_up(pipeline, 96, 64)

    assert seconds > 0
    scale = pipeline.vae_scale_factor
    assert {shape[-2:] for shape in shapes} == {(64 // scale, 96 // scale)}


def test_bench_gpu_takes_compile_with_an_optional_mode() -> None:
    import bench.gpu as bench_gpu

    assert bench_gpu.parse_args(["--compile", "--family", "sd15"]).compile == "max-autotune-no-cudagraphs"
    assert bench_gpu.parse_args(["--compile", "reduce-overhead"]).compile == "reduce-overhead"
    assert bench_gpu.parse_args([]).compile is None
