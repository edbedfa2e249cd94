"""an approval is bound to a digest of the exact arguments

A step proposed for approval records the digest of its tool and validated arguments
(`arguments_digest`); an approval records the digest it was given for (`approved_digest`), and
the resumed run makes the call only if its arguments still have that digest. Steps waiting at
the upgrade, or approved and not yet made, are bound to the arguments they hold: that is what
their approver was shown.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# The digest must be the one the running code compares with, so it is not copied here.
from gateway.store.records import call_digest

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("steps", sa.Column("arguments_digest", sa.String(64), nullable=True))
    op.add_column("steps", sa.Column("approved_digest", sa.String(64), nullable=True))
    steps = sa.table(
        "steps",
        sa.column("id"),
        sa.column("tool"),
        sa.column("arguments", sa.JSON),
        sa.column("status"),
        sa.column("arguments_digest"),
        sa.column("approved_digest"),
    )
    bind = op.get_bind()
    waiting = bind.execute(
        sa.select(steps.c.id, steps.c.tool, steps.c.arguments, steps.c.status).where(
            steps.c.status.in_(("awaiting_approval", "approved"))
        )
    ).all()
    for row in waiting:
        digest = call_digest(row.tool, row.arguments)
        approved = digest if row.status == "approved" else None
        bind.execute(
            sa.update(steps)
            .where(steps.c.id == row.id)
            .values(arguments_digest=digest, approved_digest=approved)
        )


def downgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.drop_column("approved_digest")
        batch.drop_column("arguments_digest")
