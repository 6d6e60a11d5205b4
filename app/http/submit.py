"""Submitting jobs: enqueue them on the request's session, then tell the workers about each one.

The row is the job (DESIGN.md, the job's life); ``dispatch(id)`` only says "go look at generation
N". In embedded mode a missed dispatch is covered by the pool's next poll, but in scaled mode a
job that was committed and never dispatched waits forever. So no route calls ``enqueue`` and
``dispatch`` itself: it asks for the ``Submit`` dependency (app.deps) and submits through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session, UOWTransaction

from app.db.models import Generation, User
from app.services import generations
from app.services.generations import NewGeneration

P = ParamSpec("P")
T = TypeVar("T")


class Submitter:
    """Enqueues on one session and dispatches every job that session commits meanwhile.

    ``submit(owner=..., new=...)`` enqueues one job. ``submit.through(service, ...)`` runs a service
    that enqueues its own jobs (a variation, a seed grid, an interpolation walk) on the same session
    and dispatches all of them. A service that fails after committing some jobs (a grid refused at
    its fourth cell) still has those dispatched: their rows are queued, so they must run.
    """

    def __init__(self, session: Session, dispatch: Callable[[int], None], *, max_queued: int | None = None) -> None:
        self.session = session
        self.dispatch = dispatch
        if max_queued is not None:
            # generations.enqueue refuses (429) a job past this many unfinished images per artist.
            session.info[generations.QUOTA_KEY] = max_queued

    def __call__(self, *, owner: User, new: NewGeneration) -> Generation:
        return self.through(generations.enqueue, owner=owner, new=new)

    def through(self, service: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        flushed: list[int] = []
        committed: list[int] = []

        # A flush has run the INSERTs (the ids are known) but ``session.new`` still lists the rows.
        def on_flush(session: Session, _: UOWTransaction) -> None:
            flushed.extend(row.id for row in session.new if isinstance(row, Generation))

        def on_commit(_: Session) -> None:
            committed.extend(flushed)
            flushed.clear()

        def on_rollback(_: Session) -> None:
            flushed.clear()

        listeners: list[tuple[str, Callable[..., Any]]] = [
            ("after_flush", on_flush),
            ("after_commit", on_commit),
            ("after_rollback", on_rollback),
        ]
        for name, listener in listeners:
            event.listen(self.session, name, listener)
        try:
            return service(self.session, *args, **kwargs)
        finally:
            for name, listener in listeners:
                event.remove(self.session, name, listener)
            # After the commit, never before: a worker told too early would find no row to claim.
            for generation_id in committed:
                self.dispatch(generation_id)
