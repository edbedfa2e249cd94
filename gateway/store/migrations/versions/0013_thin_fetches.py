"""thin events: the object fetched for an event beside its body, and the fetches under way

`events.fetched` holds what the provider's API answered for a thin event (the raw body is
kept as it came); `event_fetches` holds each fetch's attempts, next try and last error.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("events", sa.Column("fetched", sa.JSON, nullable=True))
    op.create_table(
        "event_fetches",
        sa.Column("event_id", Id, sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retry_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_event_fetches_due", "event_fetches", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_event_fetches_due", table_name="event_fetches")
    op.drop_table("event_fetches")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("fetched")
