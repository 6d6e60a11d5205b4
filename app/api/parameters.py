"""Parameters API: reading a PNG's generation parameters (ours or AUTOMATIC1111's) back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, UploadFile
from pydantic import ValidationError

from app.deps import CurrentUser, SettingsDep
from app.params import Region
from app.schemas import ParametersOut
from app.services.errors import TooLarge
from app.services.metadata import read_png_parameters, scheduler_to_sampler

router = APIRouter(tags=["parameters"])

# The parameters the answer names; anything else a chunk carries goes to ``extra``.
KNOWN = tuple(name for name in ParametersOut.model_fields if name not in ("source", "extra", "regions"))
# What our own chunk carries that is about the file, not about how to paint it again.
NOT_PARAMETERS = {"generation_id", "index", "parent_id", "mode", "strength", "cfg_scale"}


def readable_regions(value: Any) -> list[Region]:
    """The regions a PNG records that still read as regions; a damaged or foreign entry is left out."""
    regions = []
    for item in value if isinstance(value, list) else []:
        try:
            regions.append(Region.model_validate(item))
        except ValidationError:
            continue
    return regions


def parameters_out(parsed: dict[str, Any], *, ours: bool) -> ParametersOut:
    if not parsed:
        return ParametersOut(source="none")
    known = {name: parsed.get(name) for name in KNOWN}
    if ours and known["scheduler"] and not known["sampler"]:
        known["sampler"] = scheduler_to_sampler(str(known["scheduler"]))
    extra = {
        key: value
        for key, value in parsed.items()
        if key not in KNOWN and key not in NOT_PARAMETERS and isinstance(value, str | int | float | bool | None)
    }
    regions = readable_regions(parsed.get("regions"))
    return ParametersOut(source="studio" if ours else "a1111", **known, regions=regions, extra=extra)


@router.post("/parameters/read", response_model=ParametersOut)
async def read_parameters(file: UploadFile, user: CurrentUser, settings: SettingsDep) -> ParametersOut:
    """The prompt and parameters a PNG carries, to load them into the studio; a non-PNG is 415."""
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise TooLarge(f"the file is larger than {settings.max_upload_bytes // (1024 * 1024)} MiB")
    parsed = read_png_parameters(data)
    # An A1111 infotext always reads with a "sampler" key; our own JSON chunk never has one.
    return parameters_out(parsed, ours="sampler" not in parsed)
