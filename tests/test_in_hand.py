"""The events a worker holds for runs about to start (gateway.runs.in_hand)."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.runs.in_hand import EventsInHand
from gateway.store import Event


def event(event_id: int) -> Event:
    received = datetime(2026, 12, 1, tzinfo=UTC)
    return Event(
        event_id, "shop", "shopify", "orders/create", f"d{event_id}", received, {}, b"{}", "routed"
    )


def test_an_event_is_held_until_the_last_of_its_runs_starts() -> None:
    hand = EventsInHand(limit=4)
    assert hand.keep(event(1), 2)
    assert not hand.keep(event(2), 0), "no run to start here: not held"
    first = hand.take(1)
    assert first is not None and first.id == 1 and 1 in hand
    assert hand.take(1) is not None and 1 not in hand and len(hand) == 0
    assert hand.take(1) is None
    # Read again for a run claimed later (a retry): held again for that run.
    assert hand.keep(event(1), 1) and hand.take(1) is not None and len(hand) == 0


def test_when_full_the_oldest_stay_unless_held_longer_than_stale() -> None:
    now = [0.0]
    hand = EventsInHand(limit=2, stale=60.0, clock=lambda: now[0])
    assert hand.keep(event(1), 1) and hand.keep(event(2), 1)
    # Full: the oldest are the next claims' events; the newest is read with its claim.
    assert not hand.keep(event(3), 1) and 3 not in hand and 1 in hand
    assert hand.keep(event(2), 1), "more runs of an event held: held for those too"
    # At the edge: held 59.9 s, not stale; held 60 s, its runs started elsewhere.
    now[0] = 59.9
    assert not hand.keep(event(3), 1)
    now[0] = 60.0
    assert hand.keep(event(3), 1)
    assert [n for n in (1, 2, 3) if n in hand] == [2, 3]
    assert hand.take(2) is not None and 2 in hand, "one of its two runs started"
    # Read for runs just claimed: held even when full, until they start.
    assert hand.keep(event(4), 2, claimed=True) and len(hand) == 3
    assert hand.take(4) is not None and hand.take(4) is not None and len(hand) == 2
