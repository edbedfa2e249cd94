"""The eval store's record of `gateway eval` runs: kept with their report for the dashboard's
eval page and `gateway evals`, and deleted with every event, run and step they copied in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from gateway.store.part import Part, now_utc
from gateway.store.records import EvalSummary, StoredEval
from gateway.store.retention import _delete_runs
from gateway.store.schema import evals, events, mcp_listings, runs

SUMMARY = [c for c in evals.columns if c.name not in ("event_ids", "report")]


class Evals(Part):
    """`EvalStore` on the `evals` table."""

    async def add(self, summary: EvalSummary, event_ids: Sequence[int], report: Any) -> int:
        values = {c.name: getattr(summary, c.name) for c in SUMMARY if c.name != "id"}
        values["created_at"] = (values["created_at"] or now_utc()).astimezone(UTC)
        statement = insert(evals).values(**values, event_ids=list(event_ids), report=report)

        def change(conn: Connection) -> int:
            key: Any = conn.execute(statement).inserted_primary_key
            return int(key[0])

        return await self.journal.apply(change)

    async def latest(self, limit: int) -> list[EvalSummary]:
        query = select(*SUMMARY).order_by(evals.c.id.desc()).limit(limit)
        return [_summary(row) for row in await self._rows(query)]

    async def get(self, eval_id: int) -> StoredEval | None:
        row = await self._first(select(evals).where(evals.c.id == eval_id))
        if row is None:
            return None
        return StoredEval(_summary(row), list(row.event_ids), dict(row.report))

    async def delete(self, eval_id: int) -> bool:
        def change(conn: Connection) -> bool:
            found = conn.execute(select(evals.c.event_ids).where(evals.c.id == eval_id)).first()
            if found is None:
                return False
            copied = [int(i) for i in found.event_ids]
            chosen = select(runs.c.id).where(runs.c.event_id.in_(copied))
            _delete_runs(conn, list(conn.execute(chosen).scalars()))
            conn.execute(delete(events).where(events.c.id.in_(copied)))
            conn.execute(delete(evals).where(evals.c.id == eval_id))
            return True

        return await self.journal.apply(change)

    async def keep_listing(self, server: str, tools: dict[str, Any]) -> None:
        values = {"server": server, "tools": tools, "listed_at": now_utc()}
        statement = (
            self._insert(mcp_listings)
            .values(**values)
            .on_conflict_do_update(
                index_elements=["server"], set_={"tools": tools, "listed_at": values["listed_at"]}
            )
        )
        await self.journal.apply(lambda conn: conn.execute(statement))

    async def listing(self, server: str) -> dict[str, Any] | None:
        row = await self._first(select(mcp_listings.c.tools).where(mcp_listings.c.server == server))
        return dict(row.tools) if row is not None else None


def _summary(row: Any) -> EvalSummary:
    created = row.created_at
    return EvalSummary(
        id=row.id,
        created_at=created if created.tzinfo else created.replace(tzinfo=UTC),
        rules=row.rules,
        events=row.events,
        changed=row.changed,
        cost_live=row.cost_live,
        cost_candidate=row.cost_candidate,
        latency_delta_ms=row.latency_delta_ms,
        expectations=row.expectations,
        expectations_failed=row.expectations_failed,
    )
