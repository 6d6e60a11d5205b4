"""Admin API: accounts and the queue; anyone but an admin is told these do not exist (404)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from app.db.models import Role
from app.deps import AdminUser, SessionDep
from app.params import RowId
from app.schemas import UtcDatetime
from app.services import admin

router = APIRouter(prefix="/admin", tags=["admin"])


class AccountOut(BaseModel):
    id: int
    username: str
    role: str
    created_at: UtcDatetime
    generations: int
    galleries: int


class RoleIn(BaseModel):
    role: Literal["admin", "artist"]


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
        )
        for account in admin.accounts(session)
    ]


@router.patch("/users/{user_id}", response_model=AccountOut)
def set_role(user_id: RowId, body: RoleIn, session: SessionDep, actor: AdminUser) -> AccountOut:
    user = admin.set_role(session, actor=actor, user_id=user_id, role=Role(body.role))
    account = next(item for item in admin.accounts(session) if item.user.id == user.id)
    return AccountOut(
        id=user.id,
        username=user.username,
        role=user.role.value,
        created_at=user.created_at,
        generations=account.generations,
        galleries=account.galleries,
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
