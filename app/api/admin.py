"""Admin API: accounts and the queue; anyone but an admin is told these do not exist (404)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.db.models import Role
from app.deps import AdminUser, SessionDep
from app.params import RowId
from app.schemas import UtcDatetime
from app.services import admin
from app.services.errors import NotFound

router = APIRouter(prefix="/admin", tags=["admin"])


class AccountOut(BaseModel):
    id: int
    username: str
    role: str
    created_at: UtcDatetime
    generations: int
    galleries: int
    max_queued_images: int | None = Field(description="this artist's quota of unfinished images; null: the setting")


class AccountPatch(BaseModel):
    role: Literal["admin", "artist"] | None = None
    max_queued_images: int | None = Field(
        default=None, ge=1, le=100_000, description="unfinished images this artist may have; null: the setting"
    )


class QueuedOut(BaseModel):
    id: int
    user_id: int
    status: str
    model: str
    prompt: str
    worker: str | None
    created_at: UtcDatetime


@router.get("/users", response_model=list[AccountOut])
def list_users(session: SessionDep, _: AdminUser) -> list[AccountOut]:
    return [
        AccountOut(
            id=account.user.id,
            username=account.user.username,
            role=account.user.role.value,
            created_at=account.user.created_at,
            generations=account.generations,
            galleries=account.galleries,
            max_queued_images=account.user.max_queued_images,
        )
        for account in admin.accounts(session)
    ]


@router.patch("/users/{user_id}", response_model=AccountOut)
def update_account(user_id: RowId, body: AccountPatch, session: SessionDep, actor: AdminUser) -> AccountOut:
    """Change an account's role, or raise (or cut) its quota; only the fields sent change."""
    if body.role is not None:
        admin.set_role(session, actor=actor, user_id=user_id, role=Role(body.role))
    if "max_queued_images" in body.model_fields_set:
        admin.set_quota(session, user_id=user_id, max_queued_images=body.max_queued_images)
    account = next((item for item in admin.accounts(session) if item.user.id == user_id), None)
    if account is None:
        raise NotFound(f"user {user_id} not found")
    user = account.user
    return AccountOut(
        id=user.id,
        username=user.username,
        role=user.role.value,
        created_at=user.created_at,
        generations=account.generations,
        galleries=account.galleries,
        max_queued_images=user.max_queued_images,
    )


@router.get("/queue", response_model=list[QueuedOut])
def queue(session: SessionDep, _: AdminUser) -> list[QueuedOut]:
    return [
        QueuedOut(
            id=job.id,
            user_id=job.user_id,
            status=job.status.value,
            model=job.model,
            prompt=job.prompt,
            worker=job.worker,
            created_at=job.created_at,
        )
        for job in admin.queue(session)
    ]
