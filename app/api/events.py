"""Generation events: the server-sent stream of a job's progress and status."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Request
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from app.db.models import Generation, Status, User
from app.deps import BusDep, CurrentUser
from app.services import generations

router = APIRouter(tags=["generations"])


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
