"""The session store: dashboard sessions ended by logout, refused by every replica.

A revocation is useless once its cookie has expired (the expiry refuses it), so logouts delete
those as they go.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, delete, select

from gateway.store.part import Part
from gateway.store.schema import session_revocations


class Sessions(Part):
    """`SessionStore` on the `session_revocations` table."""

    async def revoke(
        self, nonce: str, expires_at: datetime, *, now: datetime | None = None
    ) -> None:
        now = (now or datetime.now(UTC)).astimezone(UTC)
        # A second logout with the same cookie (or on another replica) changes nothing.
        record = (
            self._insert(session_revocations)
            .values(nonce=nonce, expires_at=expires_at.astimezone(UTC))
            .on_conflict_do_nothing(index_elements=["nonce"])
        )
        expired = delete(session_revocations).where(session_revocations.c.expires_at <= now)

        def change(conn: Connection) -> None:
            conn.execute(expired)
            if expires_at > now:  # an expired cookie is refused by its own expiry
                conn.execute(record)

        await self.journal.apply(change)

    async def revoked(self, nonce: str) -> bool:
        query = select(session_revocations.c.nonce).where(session_revocations.c.nonce == nonce)
        return await self._first(query) is not None
