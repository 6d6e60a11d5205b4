"""A pipeline's execution device, kept from its load instead of worked out again on every call.

diffusers' pipelines ask ``self._execution_device`` at the start of every call, and the property
walks every module of every component to find it: about 2 ms of a call on two CPU cores, 2% of a
64x64 studio-tiny job at its default schedule. A pipeline the registry placed whole on one device
keeps that device (``keep``); one whose modules move during a call (CPU offload, low VRAM) is asked
as before, and so is every pipeline the studio did not mark.

``DiffusionPipeline._execution_device`` becomes, once (``keep`` installs it), a property that answers
a kept device and otherwise asks the original property.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
from diffusers import DiffusionPipeline

ATTRIBUTE = "_studio_execution_device"

_installed = threading.Lock()
_original: property | None = None


def _kept_or_walked(pipeline: Any) -> torch.device:
    kept: torch.device | None = pipeline.__dict__.get(ATTRIBUTE)
    if kept is not None:
        return kept
    assert _original is not None and _original.fget is not None
    device: torch.device = _original.fget(pipeline)
    return device


def _install() -> None:
    global _original
    with _installed:
        if _original is not None:
            return
        original = DiffusionPipeline.__dict__["_execution_device"]
        assert isinstance(original, property)
        _original = original
        DiffusionPipeline._execution_device = property(_kept_or_walked, doc=original.__doc__)  # type: ignore[assignment,method-assign]


def keep(pipeline: Any, device: str | torch.device) -> None:
    """``pipeline`` runs on ``device`` whole (no offload hooks): its calls take that as their device."""
    _install()
    # Past DiffusionPipeline.__setattr__, which would try to register it in the pipeline's config.
    pipeline.__dict__[ATTRIBUTE] = torch.device(device)


def kept(pipeline: Any) -> torch.device | None:
    """The device ``keep`` gave ``pipeline``, if any."""
    device: torch.device | None = pipeline.__dict__.get(ATTRIBUTE)
    return device
