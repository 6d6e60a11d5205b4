"""Unlisted galleries are reached by a random slug, never by counting ids.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Every gallery gets ``slug`` (128 random bits, URL-safe): an unlisted gallery opens at
``/g/{slug}`` for anyone signed in who holds the link, and by its numeric id only for its owner.
Existing galleries are given slugs here.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("galleries") as batch:
        batch.add_column(sa.Column("slug", sa.String(32), nullable=True))
    galleries = sa.table("galleries", sa.column("id", sa.Integer()), sa.column("slug", sa.String(32)))
    connection = op.get_bind()
    for (gallery_id,) in connection.execute(sa.select(galleries.c.id)).all():
        connection.execute(
            galleries.update().where(galleries.c.id == gallery_id).values(slug=secrets.token_urlsafe(16))
        )
    with op.batch_alter_table("galleries") as batch:
        batch.alter_column("slug", existing_type=sa.String(32), nullable=False)
        batch.create_unique_constraint("uq_galleries_slug", ["slug"])


def downgrade() -> None:
    with op.batch_alter_table("galleries") as batch:
        batch.drop_constraint("uq_galleries_slug", type_="unique")
        batch.drop_column("slug")
