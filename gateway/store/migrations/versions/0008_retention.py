"""retention: events whose body was pruned, and indexes the pruning job scans

`events.pruned_at` marks an event whose raw body and headers were pruned: its row stays (its
dedup key keeps a late redelivery a duplicate). The partial index finds the events still
holding a body oldest first without passing over the pruned ones; `runs.created_at` finds old
runs.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNPRUNED = sa.text("pruned_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("events", recreate="never") as batch:
        batch.add_column(sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_events_unpruned",
        "events",
        ["received_at"],
        sqlite_where=UNPRUNED,
        postgresql_where=UNPRUNED,
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_created_at", table_name="runs")
    op.drop_index("ix_events_unpruned", table_name="events")
    with op.batch_alter_table("events", recreate="never") as batch:
        batch.drop_column("pruned_at")
