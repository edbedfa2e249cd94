"""model turns by start time, for budgets: what was spent today is summed from the journal

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_steps_kind_started_at", "steps", ["kind", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_steps_kind_started_at", table_name="steps")
