"""reconciliation: how each event came in, and a record of every reconciliation run

`events.received_via` says whether the sender delivered an event (`webhook`, the default) or
reconciliation found it through the provider's API (`reconcile`); an index on
`(source, delivery_id)` answers "is this GitHub delivery stored?". `reconciliations` keeps one
row per run of a source's reconciliation: unique on `(source, period)`, so replicas firing the
same period make one run, and the last successful run's cursor is where the next one starts.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("events", recreate="never") as batch:
        batch.add_column(
            sa.Column("received_via", sa.String(20), nullable=False, server_default="webhook")
        )
    op.create_index("ix_events_source_delivery_id", "events", ["source", "delivery_id"])
    op.create_table(
        "reconciliations",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("period", sa.String(100), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("found", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("missing", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("stored", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("redelivered", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cursor", sa.String(300), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.UniqueConstraint("source", "period", name="uq_reconciliations_source_period"),
    )
    op.create_index(
        "ix_reconciliations_source_started_at", "reconciliations", ["source", "started_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_reconciliations_source_started_at", table_name="reconciliations")
    op.drop_table("reconciliations")
    op.drop_index("ix_events_source_delivery_id", table_name="events")
    with op.batch_alter_table("events", recreate="never") as batch:
        batch.drop_column("received_via")
