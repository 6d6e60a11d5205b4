"""Generations API: enqueue, inspect, list, watch and cancel jobs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from sqlalchemy.orm import Session
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from app.db.models import Generation, Mode, Status, User
from app.deps import BusDep, CurrentUser, DispatchDep, RegistryDep, SessionDep, SettingsDep
from app.schemas import GenerationAccepted, GenerationOut, GenerationPage, ImageOut, PromptRequest
from app.services import estimates, generations
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
    position = generations.queue_position(session, generation)
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
    dispatch: DispatchDep,
) -> GenerationAccepted:
    new = new_generation(body, mode=Mode.TXT2IMG, registry=registry, default_model=settings.default_model)
    generation = generations.enqueue(session, owner=user, new=new)
    dispatch(generation.id)
    return accepted(generation)


@router.get("/generations", response_model=GenerationPage)
def list_generations(
    session: SessionDep,
    user: CurrentUser,
    q: Annotated[str | None, Query(max_length=200)] = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
    mode: Mode | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[int | None, Query(ge=1)] = None,
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
def get_generation(generation_id: int, session: SessionDep, user: CurrentUser) -> GenerationOut:
    generation = generations.get_visible(session, generation_id=generation_id, user=user)
    return generation_out(session, generation)


@router.post("/generations/{generation_id}/cancel", response_model=GenerationOut)
def cancel_generation(generation_id: int, session: SessionDep, user: CurrentUser, bus: BusDep) -> GenerationOut:
    generation = generations.cancel(session, generation_id=generation_id, user=user)
    bus.publish(generation.id, "status", {"status": generation.status.value})
    return generation_out(session, generation)


def _final_status(request: Request, generation_id: int) -> Status | None:
    with request.app.state.session_factory() as session:
        generation = session.get(Generation, generation_id)
        if generation is None:
            return Status.FAILED
        return generation.status if generation.status.is_final else None


@router.get("/generations/{generation_id}/events")
async def generation_events(
    generation_id: int,
    request: Request,
    user: CurrentUser,
    bus: BusDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """Server-sent events: ``progress`` {step, total, preview?} and ``status`` {status}.

    A client that reconnects with ``Last-Event-ID`` gets only what it missed. The stream ends
    after a final status; the database is consulted too, so a job that ended before the client
    connected (or whose events were forgotten) still closes the stream.
    """
    await run_in_threadpool(_check_visible, request, generation_id, user)
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else -1

    async def stream() -> AsyncIterator[dict[str, str]]:
        nonlocal after
        idle = 0.0
        while True:
            events = await run_in_threadpool(bus.read, generation_id, after)
            for event in events:
                after = event.id
                yield {"event": event.name, "id": str(event.id), "data": json.dumps(event.data)}
                if event.name == "status" and Status(event.data["status"]).is_final:
                    return
            if events:
                idle = 0.0
            else:
                idle += 0.1
                if idle >= 1.0:
                    idle = 0.0
                    final = await run_in_threadpool(_final_status, request, generation_id)
                    if final is not None:
                        yield {"event": "status", "data": json.dumps({"status": final.value})}
                        return
                await asyncio.sleep(0.1)

    return EventSourceResponse(stream(), ping=15)


def _check_visible(request: Request, generation_id: int, user: User) -> None:
    with request.app.state.session_factory() as session:
        generations.get_visible(session, generation_id=generation_id, user=user)
