"""Administration views: every account with its activity, and the job queue as workers see it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import Gallery, Generation, Role, Status, User
from app.services.errors import InvalidInput, NotFound


@dataclass
class Account:
    user: User
    generations: int
    galleries: int


def accounts(session: Session) -> list[Account]:
    generation_counts: dict[int, int] = {
        user_id: count
        for user_id, count in session.execute(select(Generation.user_id, func.count()).group_by(Generation.user_id))
    }
    gallery_counts: dict[int, int] = {
        owner_id: count
        for owner_id, count in session.execute(select(Gallery.owner_id, func.count()).group_by(Gallery.owner_id))
    }
    return [
        Account(user=user, generations=generation_counts.get(user.id, 0), galleries=gallery_counts.get(user.id, 0))
        for user in session.scalars(select(User).order_by(User.id))
    ]


def queue(session: Session, *, limit: int = 100) -> list[Generation]:
    """Running jobs first, then queued ones, oldest first."""
    stmt = (
        select(Generation)
        .where(Generation.status.in_((Status.RUNNING, Status.QUEUED)))
        .order_by(Generation.status.desc(), Generation.priority.desc(), Generation.created_at, Generation.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def set_role(session: Session, *, actor: User, user_id: int, role: Role) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    if user.id == actor.id and role != Role.ADMIN:
        raise InvalidInput("you cannot take the admin role from yourself; ask another admin")
    user.role = role
    session.commit()
    return user


def set_quota(session: Session, *, user_id: int, max_queued_images: int | None) -> User:
    """Raise (or cut) one artist's quota of unfinished images; None returns them to STUDIO_MAX_QUEUED_PER_USER."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    user.max_queued_images = max_queued_images
    session.commit()
    return user
