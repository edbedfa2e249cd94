"""what was signed decides a duplicate (events.dedup_key)

Up to 0003 events were unique on (source, delivery_id), and for GitHub, Shopify, WooCommerce,
GitLab and generic sources that id came from an unsigned header: a captured body replayed
under a new id was stored again, and a replay could claim a later delivery's id. From here the
unique key is `dedup_key`, taken from signed material only; `delivery_id` stays as the
sender's hint, no longer unique.

The unique column is renamed to `dedup_key` and a new `delivery_id` column added, rather than
a new constraint swapped in: SQLite drops a table constraint only by rebuilding the table, and
with foreign keys enforced (runs reference events) the old table cannot be dropped inside the
migration's transaction. Existing rows get the key the providers compute, by a copy of their
rule frozen here (a migration must not change when provider code does). Rows that would share
a key (replays stored before this revision) are kept, the later ones with `#<event id>` after
theirs; the downgrade does the same to delivery ids that are no longer unique.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY_LENGTH = 300
PAGE = 1000
EVENTS = sa.table(
    "events",
    sa.column("id", sa.Integer),
    sa.column("source", sa.String),
    sa.column("provider", sa.String),
    sa.column("type", sa.String),
    sa.column("delivery_id", sa.String),
    sa.column("dedup_key", sa.String),
    sa.column("headers", sa.JSON),
    sa.column("body", sa.LargeBinary),
)

# The providers of 0.1 whose signed body carries the event id, and where.
BODY_IDS: dict[str, tuple[str, ...]] = {
    "stripe": ("id",),
    "intercom": ("id",),
    "circleci": ("id",),
    "slack": ("event_id",),
    "pagerduty": ("event", "id"),
    "zendesk": ("id",),
}
# Those that sign only the body (or, GitLab's token and generic's token mode, nothing of it):
# the body is the key. GitLab's signed mode depends on configuration this migration cannot
# see; the digest only misses redeliveries of signed GitLab events stored before it.
BODY_ONLY = frozenset({"github", "gitlab", "generic"})
# Those that send one body under several topics: the body with the topic (the stored type).
BODY_AND_TYPE = frozenset({"shopify", "woocommerce"})


def upgrade() -> None:
    op.execute("ALTER TABLE events RENAME COLUMN delivery_id TO dedup_key")
    op.add_column(
        "events", sa.Column("delivery_id", sa.String(300), nullable=False, server_default="")
    )
    bind = op.get_bind()
    bind.execute(sa.update(EVENTS).values(delivery_id=EVENTS.c.dedup_key))
    _rekey(bind, signed_key)


def downgrade() -> None:
    bind = op.get_bind()
    _rekey(bind, lambda row: row.delivery_id)
    op.execute("ALTER TABLE events DROP COLUMN delivery_id")
    op.execute("ALTER TABLE events RENAME COLUMN dedup_key TO delivery_id")


def signed_key(row: Any) -> str:
    """The dedup key of a stored event, as the providers of revision 0004 compute it."""
    provider, headers, body = row.provider, row.headers, row.body
    if provider in BODY_IDS:
        value = _dig(body, BODY_IDS[provider])
        return str(value) if value else _digest(body)
    if provider == "standard":
        svix = "svix-signature" in headers and "webhook-signature" not in headers
        return headers.get("svix-id" if svix else "webhook-id") or _digest(body)
    if provider in BODY_ONLY:
        return _digest(body)
    if provider in BODY_AND_TYPE:
        return _digest(row.type.encode() + b"\n" + body)
    # Jenkins (its id is read from the body), schedules, and anything else: the id it has.
    return str(row.delivery_id)


def _rekey(bind: sa.Connection, wanted: Callable[[Any], str]) -> None:
    """Set the unique column of every event to `wanted(row)`, keeping it unique.

    The first event (by id) to want a key gets it; later ones get `#<id>` after it. Rows whose
    key changes first move to a temporary key that no row holds or wants, so no update ever
    meets the old key of a row not updated yet.
    """
    current: dict[int, tuple[str, str]] = {}
    final: dict[int, tuple[str, str]] = {}
    taken: set[tuple[str, str]] = set()
    for row in _rows(bind):
        key = (row.source, wanted(row))
        if key in taken:
            key = (row.source, _suffixed(key[1], row.id))
        taken.add(key)
        current[row.id] = (row.source, row.dedup_key)
        final[row.id] = key
    moving = [event_id for event_id, key in final.items() if key != current[event_id]]
    held = taken | set(current.values())
    temporary: dict[int, str] = {}
    for event_id in moving:
        source, interim = current[event_id][0], f"0004-migrating:{event_id}"
        while (source, interim) in held:
            interim += "~"
        temporary[event_id] = interim
    update = sa.update(EVENTS).where(EVENTS.c.id == sa.bindparam("event_id"))
    update = update.values(dedup_key=sa.bindparam("key"))
    for step in (temporary, {i: final[i][1] for i in moving}):
        for start in range(0, len(moving), PAGE):
            page = moving[start : start + PAGE]
            bind.execute(update, [{"event_id": i, "key": step[i]} for i in page])


def _rows(bind: sa.Connection) -> Iterator[sa.Row[Any]]:
    """Every event in id order, a page at a time (bodies can be large)."""
    last = 0
    while True:
        page = bind.execute(
            sa.select(EVENTS).where(EVENTS.c.id > last).order_by(EVENTS.c.id).limit(PAGE)
        ).all()
        yield from page
        if len(page) < PAGE:
            return
        last = page[-1].id


def _suffixed(key: str, event_id: int) -> str:
    suffixed = f"{key}#{event_id}"
    if len(suffixed) <= KEY_LENGTH:
        return suffixed
    return "sha256:" + hashlib.sha256(suffixed.encode()).hexdigest()


def _dig(body: bytes, path: tuple[str, ...]) -> Any:
    try:
        value: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    for name in path:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()
