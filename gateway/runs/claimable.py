"""Whether a claim could find anything: the worker claims only after something may have made
a run claimable since its last claim came back short, not after every run that ends.

Under a stream of short runs, a claim and a `next_due` read after every batch that finished
cost the worker process more than the runs themselves (bench/sustain, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog

from gateway.store.notify import wait_until_set

log = structlog.get_logger(__name__)


class Claimable:
    """Counts what may make runs claimable (`changed`); a claim that returned fewer runs than
    it asked for took every claimable run there was when it began (`claimed`), so until the
    next change another claim would find nothing.

    Changes: runs created or requeued (`Worker.notify_runs`, here or in another process), a
    claim that filled every slot it had (more may wait), a run that ended other than by
    finishing (a retry, a wait, a hand-over, a crash) or that had an ordering key (the next
    run of its key), a circuit closing (its parked runs are due). Those that may move the
    earliest retry (`next_due`) say so; it is read again only then, or once the time it gave
    has come. Whatever no wake-up announces (a lease that ran out, a retry another replica
    scheduled) is looked for at least every `poll` seconds, even under a stream of wake-ups.
    """

    def __init__(self, poll: float) -> None:
        self._poll = poll
        self._changes = 1  # a worker that just started claims once
        self._settled, self._settled_at = 0, 0.0
        self._due_changes = 1
        self._due: datetime | None = None
        self._due_read, self._due_read_at = 0, 0.0

    def changed(self, *, due: bool = True) -> None:
        """Runs may be claimable; `due`: the earliest retry may have moved too."""
        self._changes += 1
        self._due_changes += due

    def claiming(self) -> int:
        """A claim begins: its mark, for `claimed`."""
        return self._changes

    def claimed(self, mark: int, asked: int, taken: int) -> None:
        """A claim that began at `mark` asked for `asked` runs and took `taken`."""
        if asked <= 0:
            return
        if taken < asked:
            if mark > self._settled:
                self._settled, self._settled_at = mark, time.monotonic()
        else:
            self.changed(due=False)

    @property
    def maybe(self) -> bool:
        """Whether a claim now could find a run the last short claim did not see."""
        return (
            self._changes != self._settled
            or self.due_passed()
            or time.monotonic() - self._settled_at >= self._poll
        )

    def due_passed(self) -> bool:
        return self._due is not None and self._due <= datetime.now(UTC)

    async def wait(
        self,
        ready: asyncio.Event,
        next_due: Callable[[], Awaitable[datetime | None]],
        *,
        slot_free: bool,
    ) -> None:
        """The run loop's idle step: until `ready` is set, the earliest retry is due (if a slot
        is free) or `poll` seconds passed; then clear `ready`. A wait that ran out is a change
        (the fallback poll, or a retry now due)."""
        seconds = self._poll
        if slot_free:
            fresh = time.monotonic() - self._due_read_at < self._poll
            if self._due_read != self._due_changes or not fresh or self.due_passed():
                mark = self._due_changes
                try:
                    self._due, self._due_read = await next_due(), mark
                    self._due_read_at = time.monotonic()
                except Exception as exc:  # the store is down: poll again after the fallback
                    log.error("worker.next_due_failed", error=str(exc))
            if self._due is not None:
                left = (self._due - datetime.now(UTC)).total_seconds()
                seconds = min(seconds, max(0.0, left))
        if not await wait_until_set(ready, seconds):
            self.changed()
        ready.clear()
