"""The store's tables, as SQLAlchemy Core metadata shared by SQLite and PostgreSQL.

Alembic migrations in `migrations/versions` create them; this module is what the code queries.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid); PostgreSQL wants BIGINT.
Id = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(100), nullable=False),
    Column("provider", String(50), nullable=False),
    Column("type", String(200), nullable=False),
    Column("delivery_id", String(300), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("headers", JSON, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("status", String(20), nullable=False, server_default="pending"),
    UniqueConstraint("source", "delivery_id", name="uq_events_source_delivery"),
    Index("ix_events_status_id", "status", "id"),
    Index("ix_events_received_at", "received_at"),
)
