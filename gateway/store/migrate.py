"""`python -m gateway.store.migrate`: bring the store whose URL comes on stdin to the head
revision, in a process of its own (`database.upgrade_apart`), then exit."""

from __future__ import annotations

import asyncio
import sys

from gateway.store import database


async def upgrade(url: str) -> None:
    engine, _ = database.connect(url)
    try:
        await database.upgrade(engine)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(upgrade(sys.stdin.read().strip()))
