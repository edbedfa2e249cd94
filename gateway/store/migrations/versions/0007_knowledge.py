"""knowledge collections: files by content hash, passages, lexical indexes

SQLite: an FTS5 table over the passages (external content, kept by triggers), ranked by BM25.
PostgreSQL: a generated tsvector column (heading weighted above text) with a GIN index.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The collection is searched as one token, its tag ('c' and the hex of its name): matched
# with the query's words, the index finds a collection's rows itself; filtering on a stored
# column instead read each matching passage's row (10x slower at 10,000 passages).
TAG = "'c' || lower(hex({row}.collection))"
SQLITE_FTS = [
    # Porter stemming: "refunds" finds "refund".
    "CREATE VIRTUAL TABLE knowledge_fts USING fts5(tag, heading, text, "
    "content='knowledge_passages', content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER knowledge_fts_insert AFTER INSERT ON knowledge_passages BEGIN "
    "INSERT INTO knowledge_fts(rowid, tag, heading, text) "
    f"VALUES (new.id, {TAG.format(row='new')}, new.heading, new.text); END",
    "CREATE TRIGGER knowledge_fts_delete AFTER DELETE ON knowledge_passages BEGIN "
    "INSERT INTO knowledge_fts(knowledge_fts, rowid, tag, heading, text) "
    f"VALUES ('delete', old.id, {TAG.format(row='old')}, old.heading, old.text); END",
]
POSTGRESQL_TSV = [
    "ALTER TABLE knowledge_passages ADD COLUMN tsv tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', heading), 'A') || "
    "setweight(to_tsvector('english', text), 'B')) STORED",
    "CREATE INDEX ix_knowledge_passages_tsv ON knowledge_passages USING gin (tsv)",
]


def upgrade() -> None:
    op.create_table(
        "knowledge_files",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("collection", sa.String(100), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("passages", sa.Integer, nullable=False),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("collection", "path", name="uq_knowledge_files_collection_path"),
    )
    op.create_table(
        "knowledge_passages",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("file_id", Id, sa.ForeignKey("knowledge_files.id"), nullable=False),
        sa.Column("collection", sa.String(100), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("heading", sa.Text, nullable=False),
        sa.Column("line_start", sa.Integer, nullable=False),
        sa.Column("line_end", sa.Integer, nullable=False),
        sa.Column("page", sa.Integer, nullable=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=True),
    )
    op.create_index("ix_knowledge_passages_file_id", "knowledge_passages", ["file_id"])
    op.create_index("ix_knowledge_passages_collection", "knowledge_passages", ["collection"])
    statements = SQLITE_FTS if op.get_bind().dialect.name == "sqlite" else POSTGRESQL_TSV
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER knowledge_fts_delete")
        op.execute("DROP TRIGGER knowledge_fts_insert")
        op.execute("DROP TABLE knowledge_fts")
    op.drop_index("ix_knowledge_passages_collection", table_name="knowledge_passages")
    op.drop_index("ix_knowledge_passages_file_id", table_name="knowledge_passages")
    op.drop_table("knowledge_passages")
    op.drop_table("knowledge_files")
