"""Upscaler networks as the studio offers them: the installed list, and checking the one an upscale asks for."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from app.engine import upscalers as upscaler_files
from app.services.errors import InvalidInput


@dataclass(frozen=True)
class InstalledUpscaler:
    name: str
    # Told from the file's tensors for ESRGAN, Real-ESRGAN (Compact) and SPAN; None for other architectures.
    scale: int | None
    architecture: str | None
    size: int


def installed(models_dir: Path) -> list[InstalledUpscaler]:
    """Every readable ``.safetensors`` upscaler under the models folder's ``upscalers/``."""
    return [
        InstalledUpscaler(name=file.name, scale=file.scale, architecture=file.architecture, size=file.size)
        for file in upscaler_files.scan(models_dir)
    ]


def checked(name: str, *, models_dir: Path) -> str:
    """``name`` when it is an installed upscaler; 422 naming the installed ones (and any refused pickle) otherwise."""
    available = upscaler_files.scan(models_dir)
    if any(file.name == name for file in available):
        if importlib.util.find_spec("spandrel") is None:
            raise InvalidInput(
                f"upscaler {name!r} needs spandrel, which is not installed (make install installs it); "
                "leave upscaler out to enlarge with Lanczos"
            )
        return name
    folder = upscaler_files.upscaler_folder(models_dir)
    refused = [path.relative_to(folder).as_posix() for path in upscaler_files.pickles(models_dir)]
    if any(Path(path).with_suffix("").as_posix() == name for path in refused):
        raise InvalidInput(
            f"upscaler {name!r} is a pickle file, which the studio never loads (it can run code); "
            "convert it to .safetensors"
        )
    names = ", ".join(sorted(file.name for file in available)) or "none installed"
    raise InvalidInput(f"unknown upscaler {name!r}; available upscalers: {names}")
