"""Generations API: enqueue, inspect, list, watch and cancel jobs."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from app.db.models import Generation, Mode
from app.deps import BusDep, CurrentUser, RegistryDep, SessionDep, SettingsDep, SubmitDep
from app.params import MAX_ID, RowId
from app.schemas import GenerationAccepted, GenerationOut, GenerationPage, ImageOut, PromptRequest
from app.services import estimates, generations, queue
from app.services.compose import new_generation

router = APIRouter(tags=["generations"])


def generation_out(session: Session, generation: Generation) -> GenerationOut:
    images = [
        ImageOut(
            id=image.id,
            url=f"/api/images/{image.id}",
            thumb_url=f"/api/images/{image.id}/thumb",
            width=image.width,
            height=image.height,
        )
        for image in generation.images
    ]
    position = queue.queue_position(session, generation)
    return GenerationOut(
        id=generation.id,
        status=generation.status.value,
        mode=generation.mode.value,
        prompt=generation.prompt,
        negative_prompt=generation.negative_prompt,
        model=generation.model,
        seed=generation.seed,
        steps=generation.steps,
        guidance=generation.guidance,
        width=generation.width,
        height=generation.height,
        n_images=generation.n_images,
        scheduler=generation.scheduler,
        strength=generation.strength,
        parent_id=generation.parent_id,
        images=images,
        error=generation.error,
        queue_position=position,
        estimated_wait_s=estimates.wait_seconds(session, generation, queue_position=position),
        created_at=generation.created_at,
        started_at=generation.started_at,
        finished_at=generation.finished_at,
    )


def accepted(generation: Generation, notes: list[str] | None = None) -> GenerationAccepted:
    return GenerationAccepted(
        id=generation.id,
        status=generation.status.value,
        url=f"/api/generations/{generation.id}",
        events_url=f"/api/generations/{generation.id}/events",
        notes=notes or [],
    )


@router.post("/generate/prompt", status_code=202, response_model=GenerationAccepted)
def generate_prompt(
    body: PromptRequest,
    session: SessionDep,
    user: CurrentUser,
    registry: RegistryDep,
    settings: SettingsDep,
    submit: SubmitDep,
) -> GenerationAccepted:
    new = new_generation(body, mode=Mode.TXT2IMG, catalog=registry, default_model=settings.default_model)
    return accepted(submit(owner=user, new=new))


@router.get("/generations", response_model=GenerationPage)
def list_generations(
    session: SessionDep,
    user: CurrentUser,
    q: Annotated[str | None, Query(max_length=200)] = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
    mode: Mode | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    min_rating: Annotated[int | None, Query(ge=1, le=5)] = None,
    since: Annotated[date | None, Query(description="created on or after this day (UTC)")] = None,
    until: Annotated[date | None, Query(description="created on or before this day (UTC)")] = None,
) -> GenerationPage:
    items, next_cursor = generations.list_for_user(
        session,
        user=user,
        q=q,
        model=model,
        mode=mode,
        limit=limit,
        cursor=cursor,
        min_rating=min_rating,
        since=since,
        until=until,
    )
    return GenerationPage(items=[generation_out(session, item) for item in items], next_cursor=next_cursor)


@router.get("/generations/{generation_id}", response_model=GenerationOut)
def get_generation(generation_id: RowId, session: SessionDep, user: CurrentUser) -> GenerationOut:
    generation = generations.get_visible(session, generation_id=generation_id, user=user)
    return generation_out(session, generation)


@router.post("/generations/{generation_id}/cancel", response_model=GenerationOut)
def cancel_generation(generation_id: RowId, session: SessionDep, user: CurrentUser, bus: BusDep) -> GenerationOut:
    generation = queue.cancel(session, generation_id=generation_id, user=user)
    bus.publish(generation.id, "status", {"status": generation.status.value})
    return generation_out(session, generation)
