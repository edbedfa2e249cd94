"""The spending store: what model turns cost in a window, summed from the journal itself, so
every replica sharing the store sees the same total (budgets, gateway.assistant.budget).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select

from gateway.store.part import Part
from gateway.store.records import Spent
from gateway.store.schema import runs, steps


class Spending(Part):
    """`SpendingStore` on the `steps` table (model turns, hosted sessions), joined to `runs`
    for one rule."""

    async def spent(self, since: datetime, until: datetime, rule: str | None = None) -> Spent:
        query = select(
            func.coalesce(func.sum(steps.c.cost), 0.0),
            func.coalesce(func.sum(steps.c.input_tokens + steps.c.output_tokens), 0),
        ).where(
            # Model turns, and hosted tools' sessions (a code_interpreter container).
            or_(steps.c.kind == "model", steps.c.cost > 0),
            # SQLite compares the stored text: the bounds must be UTC, as the column is.
            steps.c.started_at >= since.astimezone(UTC),
            steps.c.started_at < until.astimezone(UTC),
        )
        if rule is not None:
            query = query.select_from(steps.join(runs, runs.c.id == steps.c.run_id)).where(
                runs.c.rule == rule
            )
        row: Any = (await self._rows(query))[0]
        cost, tokens = row
        return Spent(cost=float(cost), tokens=int(tokens))
