"""Provenance API: checking an uploaded picture's Content Credentials and watermark."""

from __future__ import annotations

from fastapi import APIRouter, UploadFile
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from app.deps import CurrentUser, SettingsDep
from app.services import provenance
from app.services.errors import TooLarge

router = APIRouter(tags=["provenance"])


class IngredientOut(BaseModel):
    title: str
    relationship: str
    role: str | None


class ProvenanceCheckOut(BaseModel):
    format: str
    has_manifest: bool
    valid: bool
    ours: bool
    validation_state: str | None
    generator: str | None
    model: str | None
    source_type: str | None
    ingredients: list[IngredientOut]
    problems: list[str]
    watermark: bool


async def read_checked(file: UploadFile, settings: SettingsDep) -> provenance.CheckReport:
    """Reads an upload within the size limit and checks it off the event loop (decoding costs CPU)."""
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise TooLarge(f"the file is larger than {settings.max_upload_bytes // (1024 * 1024)} MiB")
    identity = provenance.identity_for(settings)
    return await run_in_threadpool(provenance.check, data, max_pixels=settings.max_upload_pixels, identity=identity)


@router.post("/provenance/check", response_model=ProvenanceCheckOut)
async def check_provenance(file: UploadFile, user: CurrentUser, settings: SettingsDep) -> ProvenanceCheckOut:
    """Whether a PNG, JPEG or WebP carries a C2PA manifest, whether it validates, whether it is this
    studio's own (signed under its root), what made it from which inputs, and whether it carries the
    studio's invisible watermark."""
    report = await read_checked(file, settings)
    return ProvenanceCheckOut(
        **{name: getattr(report, name) for name in ProvenanceCheckOut.model_fields if name != "ingredients"},
        ingredients=[IngredientOut(**vars(item)) for item in report.ingredients],
    )
