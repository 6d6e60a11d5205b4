"""ControlNets as the studio offers them: the installed list, a request's guides checked, and their maps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from app.db.models import User
from app.engine import control_maps
from app.engine import controlnets as controlnet_folders
from app.engine.catalog import ModelCatalog, ModelNotFound, ModelSpec
from app.params import ControlUnit, fit_side
from app.services import images
from app.services.errors import InvalidInput, NotFound
from app.services.imageio import encode_png
from app.services.storage import ImageStore

# The longest side of a map shown before painting when no size is asked.
PREVIEW_SIDE = 512


@dataclass(frozen=True)
class InstalledControlNet:
    name: str
    family: str | None
    size: int


def installed(models_dir: Path) -> list[InstalledControlNet]:
    """Every readable ControlNet folder under the models folder's ``controlnet/``, with its family."""
    return [
        InstalledControlNet(name=found.name, family=found.family, size=found.size)
        for found in controlnet_folders.scan(models_dir)
    ]


def fitting(catalog: ModelCatalog, model_name: str) -> list[InstalledControlNet]:
    """The installed ControlNets that can guide the model (none when its family takes no ControlNet)."""
    try:
        model = catalog.spec(model_name)
    except ModelNotFound as error:
        raise NotFound(error.args[0]) from error
    if not model.capabilities.controlnet:
        return []
    unet = controlnet_folders.model_unet_config(model.path)
    family, label = model.family.name, model.family.label
    return [
        InstalledControlNet(name=found.name, family=found.family, size=found.size)
        for found in controlnet_folders.scan(catalog.models_dir)
        if controlnet_folders.mismatch(found, family=family, family_label=label, unet_config=unet) is None
    ]


def checked(asked: list[ControlUnit], *, model: ModelSpec, models_dir: Path) -> list[ControlUnit]:
    """The asked guides, each checked: a kind the studio computes and an installed ControlNet that fits
    ``model``; 422 with the reason otherwise. (Whose the images are is checked when the job is queued.)"""
    if not asked:
        return []
    if not model.capabilities.controlnet:
        raise InvalidInput(
            f"model {model.name!r} ({model.family.label}) takes no ControlNet; "
            "the studio runs ControlNets on Stable Diffusion 1.x, 2.x and XL and on FLUX.1"
        )
    available = {found.name: found for found in controlnet_folders.scan(models_dir)}
    denoiser = controlnet_folders.model_unet_config(model.path)
    for unit in asked:
        if unit.kind not in control_maps.WEIGHTLESS_KINDS:
            raise InvalidInput(control_maps.DEPTH_REFUSAL)
        found = available.get(unit.model)
        if found is None:
            names = ", ".join(sorted(available)) or "none installed"
            raise InvalidInput(f"unknown ControlNet {unit.model!r}; available ControlNets: {names}")
        why = controlnet_folders.mismatch(
            found, family=model.family.name, family_label=model.family.label, unet_config=denoiser
        )
        if why is not None:
            raise InvalidInput(f"{why} (model {model.name!r})")
        why = controlnet_folders.kind_refusal(found, unit.kind)
        if why is not None:
            raise InvalidInput(why)
    return list(asked)


def preview(
    session: Session,
    store: ImageStore,
    *,
    image_id: int,
    kind: str,
    user: User,
    width: int | None = None,
    height: int | None = None,
) -> bytes:
    """The map of ``kind`` computed from the image as a PNG, at ``width`` x ``height`` or, when not
    given, at the image's own proportions with its longer side at most ``PREVIEW_SIDE``."""
    if kind not in control_maps.WEIGHTLESS_KINDS:
        raise InvalidInput(control_maps.DEPTH_REFUSAL)
    row = images.get_visible(session, image_id=image_id, user=user)
    source = images.load_pil(store, row)
    if width is None or height is None:
        scale = min(1.0, PREVIEW_SIDE / max(source.width, source.height))
        width = width or fit_side(round(source.width * scale))
        height = height or fit_side(round(source.height * scale))
    return encode_png(control_maps.control_map(source, kind, size=(width, height)))
