"""Attention processors signed at load: diffusers reads their signature without building it per call."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from app.engine import attention_signatures
from app.engine.attention_signatures import SignedCall
from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run
from tests.tiny_pipeline import TINY


def _processors(pipeline: Any) -> list[Any]:
    return [
        module.processor
        for component in (pipeline.unet, pipeline.vae)
        for module in component.modules()
        if isinstance(module, Attention)
    ]


def _spec() -> GenerationSpec:
    return GenerationSpec(model=TINY, prompt="a red barn", seed=3, steps=2, guidance=5.0, scheduler="ddim")


@pytest.fixture
def counted_signatures(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many signatures Python builds (``inspect.Signature`` objects made) while the test runs."""
    built = [0]
    make = inspect.Signature.__init__

    def counting(self: inspect.Signature, *args: Any, **kwargs: Any) -> None:
        built[0] += 1
        make(self, *args, **kwargs)

    monkeypatch.setattr(inspect.Signature, "__init__", counting)
    yield built


def test_a_loaded_pipeline_has_every_attention_processor_signed(tiny_registry: ModelRegistry) -> None:
    pipeline = tiny_registry.pipeline(TINY, "cpu")
    processors = _processors(pipeline)

    assert processors, "the tiny model has attention layers"
    for processor in processors:
        call = vars(processor)["__call__"]
        assert isinstance(call, SignedCall)
        # The signature diffusers reads is the one the processor's own method has.
        assert inspect.signature(processor.__call__) == inspect.signature(type(processor).__call__.__get__(processor))


def test_an_attention_layer_builds_no_signature_when_its_processor_is_signed(
    tiny_registry: ModelRegistry, counted_signatures: list[int]
) -> None:
    unet = tiny_registry.pipeline(TINY, "cpu").unet
    layer = next(module for module in unet.modules() if isinstance(module, Attention))
    hidden = torch.randn(1, 16, layer.query_dim)

    with torch.inference_mode():
        layer(hidden)
    signed = counted_signatures[0]
    layer.set_processor(AttnProcessor2_0())  # as diffusers leaves it: the signature is built on every call
    try:
        with torch.inference_mode():
            layer(hidden)
    finally:
        attention_signatures.sign_module(layer)

    assert signed == 0
    assert counted_signatures[0] > 0


def test_signed_processors_paint_what_the_unsigned_ones_paint(tiny_registry: ModelRegistry) -> None:
    signed = run(tiny_registry, _spec(), device="cpu").images[0]
    pipeline = tiny_registry.pipeline(TINY, "cpu")
    processors = _processors(pipeline)
    for processor in processors:
        del processor.__call__
    try:
        unsigned = run(tiny_registry, _spec(), device="cpu").images[0]
    finally:
        attention_signatures.sign(pipeline)

    assert np.array_equal(np.asarray(signed), np.asarray(unsigned))
    assert all(isinstance(vars(processor)["__call__"], SignedCall) for processor in processors)


def test_a_pipeline_the_gpu_fast_path_compiled_is_left_unsigned() -> None:
    class Compiled:  # what sign() reads of a pipeline: its components and the fast path's mark
        _studio_compiled = "max-autotune-no-cudagraphs"
        components = {"unet": Attention(query_dim=8, heads=1, dim_head=8, processor=AttnProcessor2_0())}

    pipeline = Compiled()

    assert attention_signatures.sign(pipeline) == 0
    assert "__call__" not in vars(pipeline.components["unet"].processor)
    pipeline._studio_compiled = None
    assert attention_signatures.sign(pipeline) == 1


def test_signing_again_changes_nothing_and_leaves_module_processors_alone() -> None:
    class ModuleProcessor(torch.nn.Module):  # as an IP-Adapter's processors are
        def __call__(self, attn: Any, hidden_states: Any, **kwargs: Any) -> Any:
            return hidden_states

    plain = Attention(query_dim=8, heads=1, dim_head=8, processor=AttnProcessor2_0())
    as_module = Attention(query_dim=8, heads=1, dim_head=8, processor=ModuleProcessor())
    holder = torch.nn.ModuleList([plain, as_module])

    assert attention_signatures.sign_module(holder) == 1
    call = vars(plain.processor)["__call__"]
    assert attention_signatures.sign_module(holder) == 0
    assert vars(plain.processor)["__call__"] is call
    assert "__call__" not in vars(as_module.processor)
    # The signed processor still paints through its own method.
    hidden = torch.randn(1, 4, 8)
    with torch.inference_mode():
        assert plain(hidden).shape == hidden.shape
