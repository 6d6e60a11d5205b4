"""Sessions that end, and a per-artist quota an admin may raise.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

``users.session_version`` is copied into each login session and checked on every request: logging
out bumps it, so a cookie saved before the logout no longer signs anyone in (every session of the
account ends: "log out everywhere"). ``users.max_queued_images`` is an admin's raise (or cut) of
STUDIO_MAX_QUEUED_PER_USER for one artist; NULL means the setting.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("max_queued_images", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("max_queued_images")
        batch.drop_column("session_version")
