"""The tables of DESIGN.md section 3."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from sqlalchemy.types import TypeDecorator

from app.db.base import Base, utcnow
from app.params import JobParams, Mode

__all__ = ["Mode"]  # re-exported: the mode of a generation is part of its parameters (app.params)


class Role(enum.StrEnum):
    ADMIN = "admin"
    ARTIST = "artist"


class Status(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)


class ImageKind(enum.StrEnum):
    OUTPUT = "output"
    UPLOAD = "upload"
    MASK = "mask"
    THUMB = "thumb"


class Visibility(enum.StrEnum):
    PRIVATE = "private"
    UNLISTED = "unlisted"
    PUBLIC = "public"


class ShareTarget(enum.StrEnum):
    GALLERY = "gallery"
    GENERATION = "generation"


class JobParamsJSON(TypeDecorator[JobParams]):
    """``JobParams`` kept as the JSON object its keys name; older rows read back through the model."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: JobParams | dict[str, Any] | None, dialect: Dialect) -> dict[str, Any]:
        if value is None:
            return {}
        if isinstance(value, dict):
            value = JobParams.model_validate(value)
        return value.stored()

    def process_result_value(self, value: dict[str, Any] | None, dialect: Dialect) -> JobParams:
        return JobParams.model_validate(value or {})


def _enum(kind: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings (no native ENUM type) so SQLite and PostgreSQL read alike.
    return Enum(kind, name=name, native_enum=False, length=16, values_callable=lambda k: [m.value for m in k])


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"), default=Role.ARTIST)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Copied into each login session and checked on every request; logging out bumps it.
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # An admin's raise (or cut) of STUDIO_MAX_QUEUED_PER_USER for this artist; None: the setting.
    max_queued_images: Mapped[int | None] = mapped_column(Integer, default=None)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)


class Generation(Base):
    """One request, and the job that serves it: the row is the source of truth for the queue."""

    __tablename__ = "generations"
    __table_args__ = (
        # A user's generations newest first (history, the API list, the studio's recent cards).
        Index("ix_generations_user_id_id", "user_id", "id"),
        # When a user was last served, for the fair order: one index probe per queued job.
        Index("ix_generations_user_id_claimed_at", "user_id", "claimed_at"),
        # The recent run times of the wait estimate, of one model and of any.
        Index("ix_generations_status_model_finished_at", "status", "model", "finished_at"),
        Index("ix_generations_status_finished_at", "status", "finished_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    mode: Mapped[Mode] = mapped_column(_enum(Mode, "mode"))
    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    model: Mapped[str] = mapped_column(String(128))
    scheduler: Mapped[str] = mapped_column(String(32))
    seed: Mapped[int] = mapped_column(BigInteger)
    steps: Mapped[int] = mapped_column(Integer)
    guidance: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    n_images: Mapped[int] = mapped_column(Integer, default=1)
    strength: Mapped[float | None] = mapped_column(Float)
    params: Mapped[JobParams] = mapped_column(JobParamsJSON, default=JobParams)
    source_image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL", use_alter=True))
    mask_image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL", use_alter=True))
    style_image_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("generations.id", ondelete="SET NULL"), index=True)
    status: Mapped[Status] = mapped_column(_enum(Status, "status"), default=Status.QUEUED)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)

    images: Mapped[list[Image]] = relationship(
        back_populates="generation",
        foreign_keys="Image.generation_id",
        order_by="Image.index",
        cascade="all, delete-orphan",
    )
    user: Mapped[User] = relationship()

    @validates("params")
    def _typed_params(self, _: str, value: JobParams | dict[str, Any] | None) -> JobParams:
        # Callers may hand the stored JSON shape; the attribute always holds the typed model.
        return value if isinstance(value, JobParams) else JobParams.model_validate(value or {})


# The queued jobs in each user's turn order (app.services.queue's fair order), read from the index
# alone; outside the class because a descending column needs the mapped attribute.
Index(
    "ix_generations_queue_turns",
    Generation.status,
    Generation.user_id,
    Generation.priority.desc(),
    Generation.created_at,
    Generation.id,
)


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        # A page's images in one IN query, in order; an owner's images newest first.
        Index("ix_images_generation_id_index", "generation_id", "index"),
        Index("ix_images_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    kind: Mapped[ImageKind] = mapped_column(_enum(ImageKind, "image_kind"))
    generation_id: Mapped[int | None] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer, default=0)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    generation: Mapped[Generation | None] = relationship(back_populates="images", foreign_keys=[generation_id])


class Gallery(Base):
    __tablename__ = "galleries"
    # Explore: public galleries newest first.
    __table_args__ = (Index("ix_galleries_visibility_created_at", "visibility", "created_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[Visibility] = mapped_column(_enum(Visibility, "visibility"), default=Visibility.PRIVATE)
    cover_image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # 128 random bits: an unlisted gallery opens at /g/{slug}, never by counting ids.
    slug: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: secrets.token_urlsafe(16))

    items: Mapped[list[GalleryItem]] = relationship(
        back_populates="gallery", order_by="GalleryItem.position", cascade="all, delete-orphan"
    )


class GalleryItem(Base):
    __tablename__ = "gallery_items"

    gallery_id: Mapped[int] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    caption: Mapped[str] = mapped_column(Text, default="")

    gallery: Mapped[Gallery] = relationship(back_populates="items")
    image: Mapped[Image] = relationship()


class ShareLink(Base):
    __tablename__ = "share_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    target: Mapped[ShareTarget] = mapped_column(_enum(ShareTarget, "share_target"))
    gallery_id: Mapped[int | None] = mapped_column(ForeignKey("galleries.id", ondelete="CASCADE"), index=True)
    generation_id: Mapped[int | None] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"), index=True)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)


class Feedback(Base):
    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("user_id", "image_id", name="uq_feedback_user_image"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    rating: Mapped[int | None] = mapped_column(Integer)
    liked: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Preference(Base):
    __tablename__ = "preferences"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    winner_image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    loser_image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    prompt: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
