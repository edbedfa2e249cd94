"""Connecting to the store's database, and keeping its schema current with Alembic.

SQLite and PostgreSQL share all code; the differences are the few flags in `Dialect`.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, exc, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, StaticPool

from gateway.errors import SchemaMismatch
from gateway.store import write_gate

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

# Alembic is imported only to change or inspect the schema, never by a gateway that finds its
# store at the head revision already: it stays ~10 MB resident once imported (benchmarks.md).

MIGRATIONS = Path(__file__).parent / "migrations"
# The PostgreSQL advisory lock key held while migrating (any constant unlikely to collide).
MIGRATION_LOCK = 0x6761746577617931
# Query parameters that carry a credential in a database URL (libpq's `?password=`).
SECRET_PARAMETER = re.compile(r"pass|secret|token|key", re.I)
HIDDEN = "***"
# A PostgreSQL connection idle this long (seconds) is pinged before use (checked_out_live).
PING_IDLE_AFTER = 1.0
_IDLE_SINCE = "gateway_idle_since"


@dataclass(frozen=True)
class Dialect:
    name: str
    # SQLite has one writer at a time: only one worker process may claim work there.
    single_writer: bool
    # `SELECT ... FOR UPDATE SKIP LOCKED` and LISTEN/NOTIFY are PostgreSQL's.
    skip_locked: bool


def async_url(url: str) -> str:
    """Accept plain URLs from users and pick the async driver the gateway uses."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url[len("sqlite:") :]
    for plain in ("postgresql:", "postgres:", "postgresql+psycopg:", "postgresql+psycopg2:"):
        if url.startswith(plain):
            return "postgresql+asyncpg:" + url[len(plain) :]
    return url


def shown_url(url: str) -> str:
    """`url` as it may be printed or logged: its password (and credential parameters) as ***.

    Any URL (the store's, or the gateway's that `gateway send` posts to), read as SQLAlchemy
    reads the store's.
    """
    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads (a bad port): hide up to the last `@`
        return re.sub(r"(//[^/:@]*):.*@", r"\1:***@", url)
    hidden = {k: HIDDEN for k in parsed.query if SECRET_PARAMETER.search(k)}
    shown = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return shown.replace(quote(HIDDEN), HIDDEN)  # rendering quoted the query's stars


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def connect(
    url: str, *, ping_idle_after: float = PING_IDLE_AFTER, **kwargs: Any
) -> tuple[AsyncEngine, Dialect]:
    """The async engine for `url`, and its dialect's flags. `ping_idle_after` is PostgreSQL's
    (checked_out_live); `kwargs` go to SQLAlchemy's `create_async_engine`."""
    full = async_url(url)
    kwargs.setdefault("json_serializer", _json)
    kwargs.setdefault("json_deserializer", orjson.loads)
    if full.startswith("sqlite"):
        if ":memory:" in full:
            raise ValueError("an in-memory SQLite store would lose every event: use a file")
        # Pooled, and no overflow: opening an aiosqlite connection starts a thread and sets
        # pragmas, which costs more than a query; overflow connections would be opened and
        # closed under every burst of the worker's concurrent reads (bench/drain).
        engine = create_async_engine(
            full, poolclass=AsyncAdaptedQueuePool, pool_size=32, max_overflow=0, **kwargs
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine, Dialect("sqlite", single_writer=True, skip_locked=False)
    engine = create_async_engine(full, pool_size=16, max_overflow=8, **kwargs)
    checked_out_live(engine, ping_idle_after)
    return engine, Dialect("postgresql", single_writer=False, skip_locked=True)


def checked_out_live(engine: AsyncEngine, ping_idle_after: float) -> None:
    """Make `engine`'s pool hand out only live PostgreSQL connections, without a round trip
    for a connection in steady use.

    SQLAlchemy's `pool_pre_ping` pings on every checkout: BEGIN, `;`, ROLLBACK, three round
    trips before each batch of the event writer (+14% webhooks/s without them, bench/ingest
    --store postgresql). Instead: a connection whose server ended it (a restart, an idle
    timeout, pg_terminate_backend) is known closed to asyncpg, and is replaced at no cost; one
    idle for `ping_idle_after` seconds or more gets the dialect's ping, as `pool_pre_ping`
    would, against a peer that vanished without closing it. Raising `DisconnectionError` in
    "checkout" makes the pool discard the connection and open another.
    """
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # Taken first: a connection replaced below starts again without an idle time.
        idle_since = record.info.pop(_IDLE_SINCE, None)
        if dbapi_connection.driver_connection.is_closed():
            raise exc.DisconnectionError("the server closed this connection")
        if idle_since is None or time.monotonic() - idle_since < ping_idle_after:
            return  # opened just now, or in use a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.DisconnectionError(
                f"the ping of an idle connection failed: {error}"
            ) from error

    event.listen(pool, "checkin", on_checkin)
    event.listen(pool, "checkout", on_checkout)


def write_engine(engine: AsyncEngine, dialect: Dialect) -> AsyncEngine:
    """The engine for work writes. On SQLite: one connection whose transactions begin
    IMMEDIATE, so writers queue for the lock (busy_timeout) instead of failing when a
    read snapshot would have to be upgraded; its pool of one serialises the process's writes.
    """
    if dialect.name != "sqlite":
        return engine
    writer = create_async_engine(
        engine.url,
        poolclass=AsyncAdaptedQueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=60,
        json_serializer=_json,
        json_deserializer=orjson.loads,
    )
    event.listen(writer.sync_engine, "connect", _sqlite_pragmas)
    event.listen(writer.sync_engine, "connect", _manual_transactions)
    event.listen(writer.sync_engine, "begin", _begin_immediate)
    return writer


def sqlite_sync_engine(path: str | None, gate: write_gate.WriteGate) -> Engine:
    """A synchronous engine on one pysqlite connection, for the journal's own thread.

    Its transactions begin IMMEDIATE, like the async write engine's, and it stores values
    exactly as the async engines read them (same dialect, same JSON serializer). It is a
    gated writer (`gate`): it begins in the gate's short pauses, not SQLite's busy handler.
    """
    if not path:
        raise ValueError("the SQLite store needs a file path")
    engine = create_engine(
        f"sqlite:///{path}",
        poolclass=StaticPool,
        connect_args={"check_same_thread": False},
        json_serializer=_json,
        json_deserializer=orjson.loads,
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "connect", _manual_transactions)
    event.listen(engine, "connect", _no_busy_wait)
    event.listen(engine, "begin", functools.partial(_begin_gated, gate))
    return engine


def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute(f"PRAGMA busy_timeout={write_gate.NO_BUSY_WAIT}")


def _begin_gated(gate: write_gate.WriteGate, connection: Connection) -> None:
    raw = connection.connection.dbapi_connection
    assert isinstance(raw, sqlite3.Connection)
    write_gate.begin_immediate(raw, gate)


def _manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event say how a transaction starts (pysqlite would not).
    dbapi_connection.isolation_level = None


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Takes effect in a new database file (before its first table): pruning can then give
    # pages back with `incremental_vacuum`; an older file needs one VACUUM (docs/operations).
    cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
    # WAL lets readers run beside the writer; FULL makes every commit survive power loss.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}


def file_head() -> str:
    """The head revision as the migration files name it: each revision is the number its file
    starts with (`0007_knowledge.py` is 0007), one after the other (a test holds this to
    Alembic's own answer)."""
    return max(
        path.name.partition("_")[0] for path in (MIGRATIONS / "versions").glob("[0-9]*_*.py")
    )


async def stored_revision(engine: AsyncEngine) -> str | None:
    """The revision recorded in the database, read without Alembic; None if it has none."""
    try:
        async with engine.connect() as conn:
            found = await conn.execute(text("SELECT version_num FROM alembic_version"))
            rows = found.scalars().all()
    except Exception:  # no alembic_version table: an empty database
        return None
    return str(rows[0]) if len(rows) == 1 else None


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply migrations up to `revision` (idempotent)."""
    if revision == "head" and await stored_revision(engine) == file_head():
        return  # nothing to apply, and Alembic need not be imported
    await check_known(engine)
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Replicas starting together migrate one after the other, not into each other.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        await conn.run_sync(_upgrade, revision)


def upgrade_apart(url: str) -> bool:
    """Bring the store at `url` to the head revision in a child process, so that Alembic's
    ~10 MB stay out of a long-running server (`gateway serve`). True if the store is at the
    head; False if the child failed, leaving the in-process `upgrade` to try again and to
    report what is wrong the way it always has (a locked, unreachable or newer database).
    """

    async def behind() -> bool | None:
        engine, _ = connect(url)
        try:
            try:
                async with engine.connect():
                    pass
            except Exception:
                return None  # unreachable: no child, the in-process upgrade says why at once
            return await stored_revision(engine) != file_head()
        finally:
            await engine.dispose()

    state = asyncio.run(behind())
    if state is None:
        return False
    if not state:
        return True
    child = [sys.executable, "-m", "gateway.store.migrate"]
    # The URL on stdin: it may hold a password, which a command line would show to `ps`.
    done = subprocess.run(child, input=url, text=True, capture_output=True, check=False)
    return done.returncode == 0


async def check_known(engine: AsyncEngine) -> str | None:
    """Refuse a database whose schema revision this version does not know (a newer gateway's)."""
    revision = await current_revision(engine)
    if revision is not None and revision not in known_revisions():
        raise SchemaMismatch(revision, head_revision())
    return revision


def _upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    config = _alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config
