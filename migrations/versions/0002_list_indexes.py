"""Indexes for the lists, the fair order, the wait estimate and explore.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Each one serves a query read with EXPLAIN on SQLite and PostgreSQL over 10,000 generations
(bench/pages.py): a user's generations newest first; when each user was last served (the fair
order probed it by scanning all of a user's rows, once per queued job); the queued jobs in turn
order; the recent run times of the estimate; a page's images; an owner's images; public
galleries newest first. Single-column indexes that a new one starts with are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_generations_user_id_id", "generations", ["user_id", "id"])
    op.drop_index("ix_generations_user_id", table_name="generations")
    op.create_index("ix_generations_user_id_claimed_at", "generations", ["user_id", "claimed_at"])
    op.create_index(
        "ix_generations_queue_turns",
        "generations",
        ["status", "user_id", sa.text("priority DESC"), "created_at", "id"],
    )
    op.drop_index("ix_generations_status_priority_created", table_name="generations")
    op.create_index("ix_generations_status_model_finished_at", "generations", ["status", "model", "finished_at"])
    op.create_index("ix_generations_status_finished_at", "generations", ["status", "finished_at"])
    op.create_index("ix_images_generation_id_index", "images", ["generation_id", "index"])
    op.drop_index("ix_images_generation_id", table_name="images")
    op.create_index("ix_images_user_id_id", "images", ["user_id", "id"])
    op.drop_index("ix_images_user_id", table_name="images")
    op.create_index("ix_galleries_visibility_created_at", "galleries", ["visibility", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_galleries_visibility_created_at", table_name="galleries")
    op.create_index("ix_images_user_id", "images", ["user_id"])
    op.drop_index("ix_images_user_id_id", table_name="images")
    op.create_index("ix_images_generation_id", "images", ["generation_id"])
    op.drop_index("ix_images_generation_id_index", table_name="images")
    op.drop_index("ix_generations_status_finished_at", table_name="generations")
    op.drop_index("ix_generations_status_model_finished_at", table_name="generations")
    op.create_index("ix_generations_status_priority_created", "generations", ["status", "priority", "created_at"])
    op.drop_index("ix_generations_queue_turns", table_name="generations")
    op.drop_index("ix_generations_user_id_claimed_at", table_name="generations")
    op.create_index("ix_generations_user_id", "generations", ["user_id"])
    op.drop_index("ix_generations_user_id_id", table_name="generations")
