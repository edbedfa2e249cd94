"""Conversation memory of assistants: items appended under a thread key, read back in order.

Appending happens in the commit that ends a run (`steps`); reading is `Threads.items`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from gateway.store.part import Part
from gateway.store.schema import thread_items


class Threads(Part):
    """`ThreadStore` on the `thread_items` table."""

    async def items(self, key: str, *, before_run: int | None = None) -> list[Any]:
        query = select(thread_items.c.item).where(thread_items.c.thread_key == key)
        if before_run is not None:
            query = query.where(thread_items.c.run_id < before_run)
        return [row.item for row in await self._rows(query.order_by(thread_items.c.id))]


INSERT_ITEM = insert(thread_items)


def item_rows(key: str, run_id: int, items: list[Any], now: datetime) -> list[dict[str, Any]]:
    """The rows of `INSERT_ITEM` that append a run's conversation `items` to thread `key`."""
    return [
        {"thread_key": key, "run_id": run_id, "item": item, "created_at": now} for item in items
    ]
