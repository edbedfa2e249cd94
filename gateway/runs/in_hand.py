"""The events a worker holds for the runs it is about to start, so a run need not read its
event back from the store.

The worker kept the last 4,096 events it routed or read, dropping the oldest. Claims take runs
oldest first, so under a backlog routing ran far ahead of the claims and the events dropped
were exactly those the next claims needed (bench/drain: the claims' reads 6 % of the worker's
samples), and once the load was over the last 4,096 bodies stayed in memory for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.store import Event

# Events held at most (their bodies: ~30 MB of 7 KB webhooks).
HELD_MAX = 4096
# An event held this long is taken for one whose runs start elsewhere (another replica claimed
# them, or they wait for an approval or a retry): it makes room for a new one when full.
STALE_SECONDS = 60.0


@dataclass
class _Held:
    event: Event
    runs: int  # runs of the event, planned or claimed here, not started yet
    since: float


class EventsInHand:
    """Events kept until the last of their runs here starts (`take`), oldest first.

    When full, a new event is not kept unless the oldest has been held longer than `stale`:
    the oldest belong to the runs the next claims take, and an event not kept is read with its
    run's claim (one query per claim). Nothing is held once every run started.
    """

    def __init__(
        self,
        limit: int = HELD_MAX,
        stale: float = STALE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.stale, self._clock = limit, stale, clock
        self._held: dict[int, _Held] = {}  # in the order kept: the oldest first

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, event_id: int) -> bool:
        return event_id in self._held

    def keep(self, event: Event, runs: int, *, claimed: bool = False) -> bool:
        """Hold `event` for `runs` more runs about to start here; whether it is held.

        `claimed`: read for runs just claimed, which start at once: held even when full (at
        most the worker's slots more), or each of those runs would read it again."""
        if runs <= 0:
            return event.id in self._held
        held = self._held.get(event.id)
        if held is not None:
            held.runs += runs
            return True
        now = self._clock()
        if len(self._held) >= self.limit and not claimed:
            oldest = next(iter(self._held.values()))
            if now - oldest.since < self.stale:
                return False
            del self._held[oldest.event.id]
        self._held[event.id] = _Held(event, runs, now)
        return True

    def take(self, event_id: int) -> Event | None:
        """The event of a run that starts now; let go once its last run here started."""
        held = self._held.get(event_id)
        if held is None:
            return None
        held.runs -= 1
        if held.runs <= 0:
            del self._held[event_id]
        return held.event
