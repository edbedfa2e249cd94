"""runs, steps, thread items and schedules: the work done on events, and its memory

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("event_id", Id, sa.ForeignKey("events.id"), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False, server_default="live"),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("ordering_key", sa.String(300), nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", When, nullable=True),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_expires_at", When, nullable=True),
        sa.Column("created_at", When, nullable=False),
        sa.Column("started_at", When, nullable=True),
        sa.Column("finished_at", When, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("thread_key", sa.String(300), nullable=True),
        sa.Column("input_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost", sa.Float, nullable=False, server_default="0"),
    )
    op.create_index("ix_runs_status_id", "runs", ["status", "id"])
    op.create_index("ix_runs_ordering_key_id", "runs", ["ordering_key", "id"])
    op.create_index("ix_runs_event_id", "runs", ["event_id"])
    op.create_table(
        "steps",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("run_id", Id, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("tool", sa.String(200), nullable=True),
        sa.Column("arguments", sa.JSON, nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
        sa.Column("started_at", When, nullable=False),
        sa.Column("finished_at", When, nullable=True),
        sa.Column("duration_ms", sa.Float, nullable=True),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("call_id", sa.String(200), nullable=True),
        sa.Column("input_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("output_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cost", sa.Float, nullable=False, server_default="0"),
        sa.Column("decision", sa.String(20), nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_at", When, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.UniqueConstraint("run_id", "position", name="uq_steps_run_position"),
        sa.UniqueConstraint("idempotency_key", name="uq_steps_idempotency_key"),
    )
    op.create_index("ix_steps_status", "steps", ["status"])
    op.create_table(
        "thread_items",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("thread_key", sa.String(300), nullable=False),
        sa.Column("run_id", Id, sa.ForeignKey("runs.id"), nullable=True),
        sa.Column("item", sa.JSON, nullable=False),
        sa.Column("created_at", When, nullable=False),
    )
    op.create_index("ix_thread_items_key_id", "thread_items", ["thread_key", "id"])
    op.create_table(
        "schedules",
        sa.Column("rule", sa.String(200), primary_key=True),
        sa.Column("last_fire_at", When, nullable=True),
        sa.Column("last_event_id", Id, nullable=True),
        sa.Column("last_result", sa.String(30), nullable=True),
        sa.Column("next_fire_at", When, nullable=True),
        sa.Column("updated_at", When, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("schedules")
    op.drop_table("thread_items")
    op.drop_table("steps")
    op.drop_table("runs")
