"""Upscalers API: the upscaler networks an upscale request may name."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import CatalogDep
from app.schemas import UpscalerOut
from app.services import upscalers

router = APIRouter(tags=["models"])


@router.get("/upscalers", response_model=list[UpscalerOut])
def list_upscalers(catalog: CatalogDep) -> list[UpscalerOut]:
    """Each ``.safetensors`` network under the models folder's ``upscalers/``, with scale and architecture if told."""
    return [
        UpscalerOut(name=upscaler.name, scale=upscaler.scale, architecture=upscaler.architecture, size=upscaler.size)
        for upscaler in upscalers.installed(catalog.models_dir)
    ]
