"""Models API and the health check."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text

from app.deps import RegistryDep, SessionDep, SettingsDep
from app.schemas import Health, ModelOut

router = APIRouter(tags=["models"])
health_router = APIRouter(tags=["health"])


@router.get("/models", response_model=list[ModelOut])
def list_models(registry: RegistryDep, settings: SettingsDep) -> list[ModelOut]:
    return [
        ModelOut(
            name=spec.name,
            default=spec.name == settings.default_model,
            width=spec.default_width,
            height=spec.default_height,
            pipeline=spec.pipeline_class,
            inpainting_unet=spec.is_inpainting_model,
            ip_adapter=spec.has_ip_adapter,
            description=spec.description,
        )
        for spec in registry.list()
    ]


@health_router.get("/healthz", response_model=Health)
def health(request: Request, session: SessionDep) -> Health:
    session.execute(text("SELECT 1"))
    pool = request.app.state.pool
    return Health(status="ok", database="ok", workers=dict(pool.busy) if pool is not None else {})
