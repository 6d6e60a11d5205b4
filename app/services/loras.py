"""LoRAs as the studio offers them: the installed list, and checking a request's LoRAs against its model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.engine import loras as lora_files
from app.engine.catalog import ModelSpec
from app.params import LoraWeight
from app.services.errors import InvalidInput


@dataclass(frozen=True)
class InstalledLora:
    name: str
    family: str | None
    size: int


def installed(models_dir: Path) -> list[InstalledLora]:
    """Every readable LoRA under the models folder's ``loras/``, with its family where it can be told."""
    return [InstalledLora(name=lora.name, family=lora.family, size=lora.size) for lora in lora_files.scan(models_dir)]


def checked(asked: list[LoraWeight], *, model: ModelSpec, models_dir: Path) -> list[LoraWeight]:
    """The asked LoRAs with their files' short hashes; 422 for an unknown name or one that doesn't fit ``model``."""
    if not asked:
        return []
    if not model.capabilities.lora:
        raise InvalidInput(f"model {model.name!r} ({model.family.label}) takes no LoRAs")
    available = {lora.name: lora for lora in lora_files.scan(models_dir)}
    model_dim = lora_files.model_cross_attention_dim(model.path)
    recorded: list[LoraWeight] = []
    for use in asked:
        lora = available.get(use.name)
        if lora is None:
            names = ", ".join(sorted(available)) or "none installed"
            raise InvalidInput(f"unknown LoRA {use.name!r}; available LoRAs: {names}")
        why = lora_files.mismatch(
            lora,
            family=model.family.name,
            family_label=model.family.label,
            model_dim=model_dim,
            denoiser=model.family.denoiser,
        )
        if why is not None:
            raise InvalidInput(f"{why} (model {model.name!r})")
        recorded.append(use.model_copy(update={"hash": lora_files.short_hash(lora)}))
    return recorded
