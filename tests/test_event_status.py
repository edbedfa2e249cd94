"""An event's status in a row of its own (`event_status`, migration 0014).

Routing changes an event's status once per event, on the worker's hot path; SQLite rewrote the
whole event (its 7 KB body's overflow pages) to change it. These tests hold the status row to
every way an event is written and removed, on both backends, and routing to a few bytes.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store import NewEvent, NewRun, Store, database
from gateway.store.retention import plain

BODY = b'{"order": "' + b"x" * 7300 + b'"}'  # the size of bench/ingest's Shopify order


def new_event(delivery_id: str, body: bytes = b'{"id": 1}', status: str = "pending") -> NewEvent:
    return NewEvent(
        source="shop",
        provider="shopify",
        type="orders/create",
        delivery_id=delivery_id,
        headers={"X-Shopify-Topic": "orders/create"},
        body=body,
        received_at=datetime(2026, 11, 25, 12, 30, tzinfo=UTC),
        status=status,
    )


async def status_rows(store: Store) -> dict[int, str]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT event_id, status FROM event_status"))
        return {int(event_id): status for event_id, status in rows}


async def test_each_event_the_door_stores_gets_the_status_it_was_settled_in(store: Store) -> None:
    pending = await store.events.add(new_event("d-1"))
    unmatched = await store.events.add(new_event("d-2", status="unmatched"))
    again = await store.events.add(new_event("d-1"))  # a redelivery: no second row

    assert again.duplicate
    assert await status_rows(store) == {pending.id: "pending", unmatched.id: "unmatched"}
    assert [e.id for e in await store.events.pending()] == [pending.id]
    assert [e.id for e in await store.events.find(status="unmatched")] == [unmatched.id]


async def test_routing_changes_the_status_row_and_leaves_the_event_as_received(
    store: Store,
) -> None:
    stored = await store.events.add(new_event("d-1"))
    plan = [NewRun(event_id=stored.id, rule="r", kind="actions")]
    assert await store.runs.route(stored.id, plan, "routed")
    assert await store.runs.route(stored.id, plan, "routed") == []  # routed once only

    event = await store.events.get(stored.id)
    assert event is not None and event.status == "routed"
    assert await store.events.pending() == []
    async with store.engine.connect() as conn:
        received = await conn.scalar(
            sa.text(f"SELECT received_status FROM events WHERE id = {stored.id}")
        )
    assert received == "pending"
    stats = await store.runs.queue_stats()
    assert stats["events"] == (0, None)


async def test_an_events_status_row_goes_with_it_and_comes_back_with_its_archive(
    store: Store,
) -> None:
    stored = await store.events.add(new_event("d-1"))
    await store.runs.route(stored.id, [], "unmatched")
    archived = await store.retention.events_to_prune(datetime.now(UTC) + timedelta(days=1), 10)
    assert [(row["id"], row["status"], row["received_status"]) for row in archived] == [
        (stored.id, "unmatched", "pending")
    ]

    later = datetime.now(UTC) + timedelta(days=1)
    assert await store.retention.prune_bodies_before(later, 10) == 1
    assert await store.retention.prune_event_rows(later, 10) == 1
    assert await status_rows(store) == {}  # the foreign key took the status row with it

    assert await store.retention.restore("events", archived) == 1
    event = await store.events.get(stored.id)
    assert event is not None and (event.status, event.body) == ("unmatched", b'{"id": 1}')


async def test_an_archive_made_before_the_status_row_comes_back_in_its_status(
    store: Store,
) -> None:
    """An archive written before migration 0014: `status` among the event's columns and no
    `received_status`; the status then stands for both, as 0014 left every older event."""
    stored = await store.events.add(new_event("d-1"))
    await store.runs.route(stored.id, [], "routed")
    [row] = await store.retention.events_to_prune(datetime.now(UTC) + timedelta(days=1), 10)
    later = datetime.now(UTC) + timedelta(days=1)
    await store.retention.prune_bodies_before(later, 10)
    await store.retention.prune_event_rows(later, 10)
    old = {key: value for key, value in row.items() if key != "received_status"}

    assert await store.retention.restore("events", [old]) == 1
    async with store.engine.connect() as conn:
        received = await conn.scalar(
            sa.text(f"SELECT received_status FROM events WHERE id = {stored.id}")
        )
    event = await store.events.get(stored.id)
    assert event is not None and (event.status, received) == ("routed", "routed")


def wal_frames(path: Path) -> int:
    with sqlite3.connect(path) as db:
        _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(frames)


async def test_routing_a_7kb_event_on_sqlite_writes_a_part_of_a_page_not_the_event(
    tmp_path: Path,
) -> None:
    """SQLite rewrote the whole 7 KB record to change its status: two to three 4 KB pages of
    WAL per event routed. Its own row shares pages with its neighbours'."""
    path = tmp_path / "gateway.db"
    store = Store(f"sqlite:///{path}")
    await store.open()
    try:
        events = 32
        stored = [await store.events.add(new_event(f"d-{n}", body=BODY)) for n in range(events)]
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert wal_frames(path) == 0
        routes = [
            (s.id, [NewRun(event_id=s.id, rule="r", kind="actions")], "routed") for s in stored
        ]
        await store.runs.route_and_claim(routes, None)
        frames = wal_frames(path)
        assert [e.status for e in await store.events.by_ids([s.id for s in stored])] == [
            "routed"
        ] * events
    finally:
        await store.close()
    # The runs' rows and indexes, the status rows and their index: a handful of pages.
    assert frames < events / 2, f"{frames} WAL pages written to route {events} events"


async def upgrade_to(url: str, revision: str) -> AsyncEngine:
    engine = database.write_engine(*database.connect(url))
    await database.upgrade(engine, revision)
    return engine


async def test_migration_0014_moves_each_status_to_its_row_and_back(store_url: str) -> None:
    engine = await upgrade_to(store_url, "0013")
    try:
        async with engine.begin() as conn:
            for n, status in enumerate(["pending", "routed", "unmatched", "fetch_failed"], 1):
                await conn.execute(
                    sa.text(
                        "INSERT INTO events (id, source, provider, type, dedup_key, delivery_id,"
                        " received_at, headers, body, status) VALUES (:id, 'shop', 'shopify',"
                        " 'orders/create', :key, :key, :at, '{}', :body, :status)"
                    ),
                    {
                        "id": n,
                        "key": f"d-{n}",
                        "at": datetime.now(UTC),
                        "body": BODY,
                        "status": status,
                    },
                )
        await database.upgrade(engine)

        async with engine.connect() as conn:
            moved = dict(
                (await conn.execute(sa.text("SELECT event_id, status FROM event_status"))).all()
            )
            received = dict(
                (await conn.execute(sa.text("SELECT id, received_status FROM events"))).all()
            )
        assert moved == {1: "pending", 2: "routed", 3: "unmatched", 4: "fetch_failed"}
        assert received == moved  # an event stored before 0014: its status then

        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE event_status SET status = 'routed' WHERE event_id = 1")
            )
            await conn.run_sync(_downgrade, "0013")
        async with engine.connect() as conn:
            back = dict((await conn.execute(sa.text("SELECT id, status FROM events"))).all())
        assert back == {1: "routed", 2: "routed", 3: "unmatched", 4: "fetch_failed"}
    finally:
        await engine.dispose()


def _downgrade(connection: sa.Connection, revision: str) -> None:
    from alembic import command

    config = database._alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


def test_an_archived_event_row_names_its_status_beside_its_columns() -> None:
    row = plain("events", {"id": 1, "status": "routed", "received_status": "pending"})
    assert (row["status"], row["received_status"]) == ("routed", "pending")


async def test_events_in_a_status_are_listed_newest_first_from_its_index(tmp_path: Path) -> None:
    """The admin API's `GET /events?status=`: the status index in reverse, not a sort of every
    event in that status (as `ix_events_status_id` was read before the status had its row)."""
    store = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
    await store.open()
    try:
        stored = [await store.events.add(new_event(f"d-{n}")) for n in range(5)]
        for one in stored[1:]:
            await store.runs.route(one.id, [], "unmatched")
        sent: list[tuple[str, object]] = []

        def keep(_conn: object, _cursor: object, sql: str, params: object, *_: object) -> None:
            if "FROM events" in sql:
                sent.append((sql, params))

        sa.event.listen(store.engine.sync_engine, "before_cursor_execute", keep)
        found = await store.events.find(status="unmatched", limit=2, before=stored[4].id)
        sa.event.remove(store.engine.sync_engine, "before_cursor_execute", keep)
        assert [e.id for e in found] == [stored[3].id, stored[2].id]
        [(sql, params)] = sent
        async with store.engine.connect() as conn:
            explained = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)
            plan = [row[-1] for row in explained]
    finally:
        await store.close()
    assert not any("TEMP B-TREE" in step for step in plan), plan
