"""an index of unfinished runs by ordering key, for claiming

Claiming takes a waiting run with an ordering key only if it is the first unfinished run of
its key. The claim query finds those first runs from this partial index, which holds only
unfinished runs: its size follows the backlog, not the history of every key. It replaces the
index of all runs by key, which only the earlier claim query read.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNFINISHED = sa.text("status NOT IN ('succeeded', 'failed', 'dead', 'cancelled')")


def upgrade() -> None:
    op.create_index(
        "ix_runs_unfinished_key",
        "runs",
        ["ordering_key", "id"],
        sqlite_where=UNFINISHED,
        postgresql_where=UNFINISHED,
    )
    op.drop_index("ix_runs_ordering_key_id", table_name="runs")


def downgrade() -> None:
    op.create_index("ix_runs_ordering_key_id", "runs", ["ordering_key", "id"])
    op.drop_index("ix_runs_unfinished_key", table_name="runs")
