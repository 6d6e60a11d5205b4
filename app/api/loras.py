"""LoRAs API: the LoRA files a generate request may name."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import CatalogDep
from app.schemas import LoraOut
from app.services import loras

router = APIRouter(tags=["models"])


@router.get("/loras", response_model=list[LoraOut])
def list_loras(catalog: CatalogDep) -> list[LoraOut]:
    """Every ``.safetensors`` LoRA under the models folder's ``loras/``, its family where it can be told."""
    return [LoraOut(name=lora.name, family=lora.family, size=lora.size) for lora in loras.installed(catalog.models_dir)]
