"""Generations API: enqueue, inspect, list, watch and cancel jobs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.db.models import Generation, Mode, Status
from app.db.session import reading
from app.deps import BusDep, CallerDep, CatalogDep, CurrentUser, SessionDep, SettingsDep, SubmitDep
from app.http import waiting
from app.params import MAX_ID, RowId
from app.schemas import GenerationAccepted, GenerationOut, GenerationPage, PromptRequest
from app.services import estimates, generations, queue
from app.services.compose import new_generation

router = APIRouter(tags=["generations"])


_UNSET: object = object()


def generation_out(
    session: Session,
    generation: Generation,
    *,
    position: int | None | object = _UNSET,
    wait_s: float | None | object = _UNSET,
) -> GenerationOut:
    """The API's view of a generation; lists pass the queue position and wait computed once per page."""
    if position is _UNSET:
        position = queue.queue_position(session, generation)
    if wait_s is _UNSET:
        wait_s = estimates.wait_seconds(session, generation, queue_position=position)  # type: ignore[arg-type]
    out = GenerationOut.model_validate(generation)
    return out.model_copy(
        update={
            "queue_position": position,
            "estimated_wait_s": wait_s,
            "loras": generation.params.loras or [],
            "regions": generation.params.regions or [],
            "control": generation.params.control or [],
            "upscaler": generation.params.upscaler,
        }
    )


def page_out(session: Session, items: Sequence[Generation]) -> list[GenerationOut]:
    """A page of generations; the queue positions and waits of its queued ones are computed once."""
    waits = estimates.queue_waits(session, items)
    return [
        generation_out(session, item, position=wait.position, wait_s=wait.seconds)
        if (wait := waits.get(item.id)) is not None
        else generation_out(session, item, position=None, wait_s=None)
        for item in items
    ]


def accepted(generation: Generation, notes: list[str] | None = None) -> GenerationAccepted:
    return GenerationAccepted(
        id=generation.id,
        status=generation.status.value,
        url=f"/api/generations/{generation.id}",
        events_url=f"/api/generations/{generation.id}/events",
        notes=notes or [],
    )


@router.post("/generate/prompt", status_code=202, response_model=GenerationAccepted)
async def generate_prompt(
    body: PromptRequest,
    user: CurrentUser,
    catalog: CatalogDep,
    settings: SettingsDep,
    submit: SubmitDep,
) -> GenerationAccepted:
    # A coroutine around one worker-thread hop: FastAPI checks a plain function's answer in a hop
    # of its own, which would come after the dispatch, beside the job's first steps.
    def enqueue() -> GenerationAccepted:
        new = new_generation(body, mode=Mode.TXT2IMG, catalog=catalog, default_model=settings.default_model)
        return accepted(submit(owner=user, new=new))

    return await run_in_threadpool(enqueue)


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
    return GenerationPage(items=page_out(session, items), next_cursor=next_cursor)


@router.get("/generations/{generation_id}", response_model=GenerationOut)
async def get_generation(
    generation_id: RowId,
    request: Request,
    session: SessionDep,
    caller: CallerDep,
    bus: BusDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=waiting.MAX_WAIT_SECONDS,
            description=(
                "seconds to hold the answer until the job has ended (a long poll); 0 answers at once, or at"
                " the job's end when that is due within half a second"
            ),
        ),
    ] = 0.0,
) -> GenerationOut:
    def read() -> tuple[GenerationOut, float | None]:
        # One worker-thread hop for who asks, the job, how soon it ends and the connection's return
        # (before any wait, and so that closing the session costs no hop of its own).
        with reading(session):
            generation = generations.get_visible(
                session, generation_id=generation_id, user=caller.required(), with_images=True
            )
            out = generation_out(session, generation)
            if wait > 0 or Status(out.status).is_final:
                return out, None
            return out, waiting.seconds_to_end(session, generation, bus=bus, queued_wait=out.estimated_wait_s)

    out, due = await run_in_threadpool(read)
    factory = request.app.state.session_factory
    if wait > 0 and not Status(out.status).is_final:
        await waiting.until_final(generation_id, bus=bus, session_factory=factory, timeout=wait)
        out, _ = await run_in_threadpool(read)  # ended or not: the job as it is now
    elif (
        due is not None
        and due <= waiting.NEAR_END_SECONDS
        # A plain poll of a job about to end is answered at its end.
        and await waiting.held_until_end(generation_id, bus=bus, session_factory=factory)
    ):
        out, _ = await run_in_threadpool(read)
    return out


@router.post("/generations/{generation_id}/cancel", response_model=GenerationOut)
def cancel_generation(generation_id: RowId, session: SessionDep, user: CurrentUser, bus: BusDep) -> GenerationOut:
    generation = queue.cancel(session, generation_id=generation_id, user=user)
    bus.publish(generation.id, "status", {"status": generation.status.value})
    return generation_out(session, generation)
