"""Models API and the health check."""

from __future__ import annotations

import logging
from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.deps import CatalogDep, SessionDep, SettingsDep
from app.schemas import Health, ModelCapabilities, ModelHealth, ModelOut
from app.workers.pool import WorkerPool

logger = logging.getLogger(__name__)

router = APIRouter(tags=["models"])
health_router = APIRouter(tags=["health"])


@router.get("/models", response_model=list[ModelOut])
def list_models(request: Request, catalog: CatalogDep, settings: SettingsDep) -> list[ModelOut]:
    pool: WorkerPool | None = request.app.state.pool
    models = []
    for spec in catalog.list():
        state = pool.model_state(spec.name) if pool is not None else None
        models.append(
            ModelOut(
                name=spec.name,
                default=spec.name == settings.default_model,
                width=spec.default_width,
                height=spec.default_height,
                size_step=spec.size_step,
                family=spec.family.name,
                family_label=spec.family.label,
                pipeline=spec.pipeline_class,
                inpainting_unet=spec.is_inpainting_model,
                ip_adapter=spec.has_ip_adapter,
                description=spec.description,
                capabilities=ModelCapabilities(**asdict(spec.capabilities)),
                state=state,
                loaded=state == "ready",
            )
        )
    return models


@health_router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "a worker thread is dead or the database does not answer"}},
)
def health(request: Request, session: SessionDep, settings: SettingsDep) -> Health | JSONResponse:
    problems: list[str] = []
    database = "ok"
    try:
        session.execute(text("SELECT 1"))
    except Exception as error:
        logger.exception("health check: the database does not answer")
        database = "error"
        problems.append(f"the database does not answer: {error.__class__.__name__}")
    pool: WorkerPool | None = request.app.state.pool
    model = None
    if pool is not None:
        problems.extend(pool.problems())
        name = settings.default_model
        model = ModelHealth(name=name, state=pool.model_state(name), error=pool.model_error(name))
    body = Health(
        status="error" if problems else "ok",
        database=database,
        workers=dict(pool.busy) if pool is not None else {},
        model=model,
        detail="; ".join(problems) or None,
    )
    if problems:
        return JSONResponse(body.model_dump(mode="json"), status_code=503)
    return body
