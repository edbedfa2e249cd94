"""PostgreSQL for `sql.query`: a READ ONLY transaction with a statement timeout, and the statement
wrapped so the server measures the rows' size and sends nothing past the cap.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.tools import PermanentToolError
from handlers.sql.statement import body

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")


def url_of(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


async def read_only(conn: AsyncConnection, seconds: float) -> None:
    await conn.execute(text("SET TRANSACTION READ ONLY"))
    await conn.execute(text(f"SET LOCAL statement_timeout = {max(1, int(seconds * 1000))}"))
    # A snapshot taken: `SET TRANSACTION READ WRITE` is refused from here on.
    await conn.execute(text("SELECT 1"))


async def columns(conn: AsyncConnection, sql: str, values: Mapping[str, Any]) -> list[str]:
    """The names of the statement's columns, without running it (LIMIT 0 reads no row)."""
    probe = f"SELECT * FROM (\n{body(sql)}\n) AS gateway_query LIMIT 0"
    result = await conn.execute(text(probe), dict(values))
    if not result.returns_rows:
        raise PermanentToolError("the statement returned no rows: use a SELECT")
    return list(result.keys())


def measured(sql: str, count: int, max_bytes: int) -> str:
    """`sql` wrapped to send, first in each row, the size of the rows' text so far, and no
    value at all past `max_bytes`: a huge value is measured on the server, never sent.

    The columns are renamed by position, so duplicate or odd names cannot clash; a window
    with no ORDER BY keeps the statement's own order.
    """
    names = [f"c{i}" for i in range(count)]
    renamed = f"({', '.join(names)})" if names else ""
    kept = "".join(f", CASE WHEN gateway_size <= {max_bytes} THEN {n} END" for n in names)
    return (
        f"SELECT gateway_size{kept} FROM (SELECT gateway_query.*, "
        "sum(octet_length(gateway_query::text)) OVER (ROWS UNBOUNDED PRECEDING) "
        f"AS gateway_size FROM (\n{body(sql)}\n) AS gateway_query{renamed}) AS gateway_rows"
    )


def value_of(value: Any) -> Any:
    """asyncpg sends a parameter as the type PostgreSQL infers for it, and a JSON argument
    has no date type: an ISO date or datetime string goes as a date or datetime."""
    if isinstance(value, str) and ISO_DATE.fullmatch(value):
        with contextlib.suppress(ValueError):
            return dt.date.fromisoformat(value)
    if isinstance(value, str) and ISO_DATETIME.fullmatch(value):
        with contextlib.suppress(ValueError):
            return dt.datetime.fromisoformat(value)
    return value
