"""eval runs: each `gateway eval` kept with its totals and report, in the eval store, and
the MCP servers' last tool lists an `--offline` eval reads

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "evals",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rules", sa.String(1000), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("cost_live", sa.Float(), nullable=False),
        sa.Column("cost_candidate", sa.Float(), nullable=False),
        sa.Column("latency_delta_ms", sa.Float(), nullable=False),
        sa.Column("expectations", sa.Integer(), nullable=False),
        sa.Column("expectations_failed", sa.Integer(), nullable=False),
        sa.Column("event_ids", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON(), nullable=False),
    )
    op.create_table(
        "mcp_listings",
        sa.Column("server", sa.String(100), primary_key=True),
        sa.Column("tools", sa.JSON(), nullable=False),
        sa.Column("listed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mcp_listings")
    op.drop_table("evals")
