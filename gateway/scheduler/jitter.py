"""APScheduler's trigger for a scheduled rule: its fire times (`Timing`), each jittered.

Apart from `timing` so that APScheduler is imported only by a gateway that schedules rules.
"""

from __future__ import annotations

from datetime import datetime

from apscheduler.triggers.base import BaseTrigger

from gateway.scheduler.timing import TICK, Timing


class JitteredTrigger(BaseTrigger):  # type: ignore[misc]
    """A rule's fire times, each delayed by up to `jitter` seconds: APScheduler's trigger.

    APScheduler 3 computes an interval's next fire time from the previous (jittered) one, so
    jitter would accumulate as drift; here the next fire time comes from the rule's grid.
    Jitter is meant to be shorter than the period.
    """

    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self.jitter = timing.jitter

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        if previous_fire_time is None:
            found = self.timing.next_after(now - TICK)
        else:
            found = self.timing.next_after(previous_fire_time)
        jittered: datetime | None = self._apply_jitter(found, self.jitter, now)
        return jittered

    def __str__(self) -> str:
        return f"{self.timing.expression} in {self.timing.zone} (jitter {self.jitter}s)"
