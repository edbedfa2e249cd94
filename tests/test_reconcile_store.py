"""The reconciliation store on every backend (SQLite and a real PostgreSQL): one run per
source and period, runs left running marked interrupted, the cursor of the last success,
events marked as reconciled, and a whole Stripe reconciliation on each."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.store import NewEvent, ReconcileStatus, Store
from gateway.testing.fake_stripe import FakeStripe
from gateway.testing.server import serve_in_thread
from tests.reconciling import STRIPE_KEY, STRIPE_SECRET, run_once, stored_events, write_config

NOW = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def stripe_api() -> Iterator[tuple[FakeStripe, str]]:
    server = FakeStripe(STRIPE_SECRET, STRIPE_KEY)
    with serve_in_thread(server.app) as url:
        yield server, url


async def test_one_run_is_begun_per_source_and_period(store: Store) -> None:
    first = await store.reconciliations.begin("gh", "every 900s #7", "redeliver", None, NOW)
    again = await store.reconciliations.begin("gh", "every 900s #7", "redeliver", None, NOW)
    other = await store.reconciliations.begin("pay", "every 900s #7", "fetch", None, NOW)
    assert first is not None and other is not None and first != other
    assert again is None
    # The replica that found the period taken left the run that took it running.
    assert [r.status for r in await store.reconciliations.recent("gh")] == ["running"]


async def test_a_run_left_running_is_interrupted_by_the_next_and_moves_no_cursor(
    store: Store,
) -> None:
    crashed = await store.reconciliations.begin("pay", "p1", "fetch", NOW, NOW)
    assert crashed is not None
    later = NOW + timedelta(minutes=10)
    succeeded = await store.reconciliations.begin("pay", "p2", "fetch", NOW, later)
    assert succeeded is not None
    await store.reconciliations.finish(
        succeeded, ReconcileStatus.SUCCEEDED, later, found=4, missing=1, stored=1,
        cursor="2026-12-01T00:09:00+00:00",
    )  # fmt: skip
    runs = {r.id: r for r in await store.reconciliations.recent("pay")}
    assert runs[crashed].status == "interrupted"
    last = await store.reconciliations.last_success("pay")
    assert last is not None and (last.id, last.found, last.missing, last.stored) == (
        succeeded, 4, 1, 1,
    )  # fmt: skip
    assert last.cursor == "2026-12-01T00:09:00+00:00"
    assert last.started_at == later and last.since == NOW


async def test_reconciled_events_are_marked_and_found_by_delivery_id(store: Store) -> None:
    def event(delivery_id: str, via: str) -> NewEvent:
        return NewEvent(source="gh", provider="github", type="push", delivery_id=delivery_id,
                        headers={}, body=delivery_id.encode(), received_at=NOW,
                        received_via=via)  # fmt: skip

    await store.events.add(event("guid-1", "webhook"))
    stored = await store.events.add(event("guid-2", "reconcile"))
    found = await store.reconciliations.stored_delivery_ids("gh", ["guid-1", "guid-2", "guid-3"])
    assert found == {"guid-1", "guid-2"}
    read = await store.events.get(stored.id)
    assert read is not None and read.received_via == "reconcile"
    assert await store.reconciliations.stored_delivery_ids("other", ["guid-1"]) == set()


def test_a_stripe_reconciliation_stores_each_event_once_on_every_backend(
    tmp_path: Path, store_url: str, stripe_api: tuple[FakeStripe, str]
) -> None:
    fake, api = stripe_api
    block = {"every": "10m", "api_key": STRIPE_KEY, "api_base": api}
    config = write_config(
        tmp_path, {"pay": {"provider": "stripe", "secret": STRIPE_SECRET, "reconcile": block}},
        store=store_url,
    )  # fmt: skip
    for n in range(3):
        fake.emit("invoice.paid", {"id": f"in_{n}"})
    first = run_once(config, "pay")
    second = run_once(config, "pay")
    assert first is not None and second is not None
    assert (first.found, first.stored, second.found, second.stored) == (3, 3, 3, 0)
    assert len(stored_events(config, "pay")) == 3
