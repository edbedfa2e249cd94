"""an event's status in a row of its own, beside the event

Routing changes an event's status once, on the worker's hot path. SQLite rewrites a whole
record to change one of its columns, the 7 KB body's overflow pages included (read, freed and
written anew): 70-120 us per event under the write lock where a narrow row takes 11-30. So the
status moves to `event_status`, one row per event, and `events.status` becomes
`received_status`: how the door settled the event, written once. A trigger inserts the status
row with each event in the statement that inserts the event, so every writer of `events` (the
door's batches, reconciliation, an evaluation's copies, a restore) gets it alike; the foreign key
deletes it with the event.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

SQLITE_TRIGGER = """
CREATE TRIGGER events_status_row AFTER INSERT ON events
BEGIN
    INSERT INTO event_status (event_id, status) VALUES (NEW.id, NEW.received_status);
END
"""
POSTGRESQL_FUNCTION = """
CREATE OR REPLACE FUNCTION events_status_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_status (event_id, status) VALUES (NEW.id, NEW.received_status);
    RETURN NULL;
END
$$
"""
POSTGRESQL_TRIGGER = """
CREATE TRIGGER events_status_row AFTER INSERT ON events
FOR EACH ROW EXECUTE FUNCTION events_status_row()
"""


def upgrade() -> None:
    op.create_table(
        "event_status",
        sa.Column("event_id", Id, sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
    )
    op.execute("INSERT INTO event_status (event_id, status) SELECT id, status FROM events")
    op.create_index("ix_event_status_status_id", "event_status", ["status", "event_id"])
    op.drop_index("ix_events_status_id", table_name="events")
    # A rename in place on both (SQLite 3.25 and later): no copy of the table.
    op.execute("ALTER TABLE events RENAME COLUMN status TO received_status")
    if _on_postgresql():
        op.execute(POSTGRESQL_FUNCTION)
        op.execute(POSTGRESQL_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    if _on_postgresql():
        op.execute("DROP TRIGGER IF EXISTS events_status_row ON events")
        op.execute("DROP FUNCTION IF EXISTS events_status_row()")
    else:
        op.execute("DROP TRIGGER IF EXISTS events_status_row")
    op.execute("ALTER TABLE events RENAME COLUMN received_status TO status")
    op.execute(
        "UPDATE events SET status ="
        " (SELECT s.status FROM event_status s WHERE s.event_id = events.id)"
        " WHERE id IN (SELECT event_id FROM event_status)"
    )
    op.create_index("ix_events_status_id", "events", ["status", "id"])
    op.drop_index("ix_event_status_status_id", table_name="event_status")
    op.drop_table("event_status")


def _on_postgresql() -> bool:
    return bool(op.get_context().dialect.name == "postgresql")
