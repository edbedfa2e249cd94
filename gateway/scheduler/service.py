"""The scheduler: turns due fire times of scheduled rules into `schedule` events in the store.

`Scheduler.tick(now)` is the whole decision, clock injected; `start()` runs it under APScheduler.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

# Defined in gateway.errors (the whole tree in one module), imported from here too.
from gateway.errors import UnknownSchedule as UnknownSchedule
from gateway.rules.model import Rule
from gateway.scheduler.timing import Timing
from gateway.store import NewEvent, Store, Stored

log = structlog.get_logger(__name__)

SOURCE = "schedule"


@dataclass(frozen=True, slots=True)
class Firing:
    """One firing of a rule: the fire time it stands for and the event it stored."""

    rule: str
    fired_at: datetime
    stored: Stored
    manual: bool = False

    @property
    def duplicate(self) -> bool:
        """Another process (or an earlier life of this one) already fired this period."""
        return self.stored.duplicate


def utcnow() -> datetime:
    return datetime.now(UTC)


def schedule_event(rule: Rule, fired_at: datetime, now: datetime, *, manual: bool) -> NewEvent:
    """The event of a firing; its delivery id is the rule and fire time, unless manual."""
    assert rule.schedule is not None
    fired = fired_at.astimezone(UTC).isoformat()
    delivery_id = f"{rule.name}@{fired}"
    if manual:
        delivery_id += f"#manual-{secrets.token_hex(6)}"
    body = {"rule": rule.name, "fired_at": fired, "timezone": rule.schedule.timezone}
    return NewEvent(
        source=SOURCE,
        provider=SOURCE,
        type=rule.name,
        delivery_id=delivery_id,
        headers={},
        body=orjson.dumps({**body, "manual": manual}),
        received_at=now,
    )


async def fire_now(store: Store, rule: Rule, *, now: datetime | None = None) -> Firing:
    """Fire `rule` at once, outside its schedule: always a new event, marked manual."""
    now = (now or utcnow()).astimezone(UTC)
    stored = await store.events.add(schedule_event(rule, now, now, manual=True))
    await store.schedules.record_manual(rule.name, event_id=stored.id, now=now)
    log.info("scheduler.fired", rule=rule.name, event_id=stored.id, manual=True)
    return Firing(rule.name, now, stored, manual=True)


class Scheduler:
    """Fires the scheduled rules of a rule set into one store.

    Any number of processes may run one against the same store: a firing's delivery id is
    (rule, fire time), which the store keeps once, so each period makes one event.
    """

    def __init__(
        self,
        store: Store,
        rules: Iterable[Rule],
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.clock = clock
        self.rules: dict[str, Rule] = {}
        self.timings: dict[str, Timing] = {}
        self._use(rules)
        self._runtime: Any = None
        self._started = False
        # Firings APScheduler started and that have not finished: stop() lets them finish.
        self._firing: set[asyncio.Task[Any]] = set()

    def _use(self, rules: Iterable[Rule]) -> None:
        scheduled = {r.name: r for r in rules if r.enabled and r.schedule is not None}
        # Validates every schedule up front: a bad one fails start-up with a ConfigError.
        timings = {name: Timing.of(rule) for name, rule in scheduled.items()}
        self.rules, self.timings = scheduled, timings

    async def tick(self, now: datetime | None = None) -> list[Firing]:
        """Fire every rule that is due at `now` (the clock if not given); return the firings."""
        now = (now or self.clock()).astimezone(UTC)
        fired = []
        for name in self.rules:
            firing = await self.fire_due(name, now)
            if firing is not None:
                fired.append(firing)
        return fired

    async def fire_due(self, name: str, now: datetime | None = None) -> Firing | None:
        """Fire rule `name` if one of its fire times is due at `now`, at most once."""
        now = (now or self.clock()).astimezone(UTC)
        rule, timing = self._get(name)
        fire_time = timing.due(await self.store.schedules.last_fire(name), now)
        if fire_time is None:
            return None
        stored = await self.store.events.add(schedule_event(rule, fire_time, now, manual=False))
        await self.store.schedules.record_fire(
            name,
            fired_at=fire_time,
            event_id=stored.id,
            result="duplicate" if stored.duplicate else "fired",
            next_fire_at=timing.next_after(now),
            now=now,
        )
        log.info(
            "scheduler.fired",
            rule=name,
            fired_at=fire_time.isoformat(),
            event_id=stored.id,
            duplicate=stored.duplicate,
        )
        return Firing(name, fire_time, stored)

    async def fire_now(self, name: str, now: datetime | None = None) -> Firing:
        """Fire rule `name` at once (`gateway fire`): a new event, marked manual."""
        rule, _ = self._get(name)
        return await fire_now(self.store, rule, now=now or self.clock())

    async def start(self) -> None:
        """Fire what is due now (catching up after downtime), then run under APScheduler.

        Call from the running event loop of a process with the scheduler role.
        """
        now = self.clock().astimezone(UTC)
        await self._record_next_fires(now)
        await self.tick(now)
        self._started = True
        for name in self.timings:
            self._add_job(name)
        log.info("scheduler.started", rules=sorted(self.rules))

    async def replace_rules(self, rules: Iterable[Rule]) -> None:
        """Schedule a reloaded rule set: new and changed rules get their (new) timing, removed
        or disabled ones stop. What is due now fires now (as at start)."""
        before = self.rules
        self._use(rules)
        now = self.clock().astimezone(UTC)
        await self._record_next_fires(now)
        if not self._started:
            return
        for name in before.keys() - self.rules.keys():
            if self._runtime is not None:
                self._runtime.remove_job(name)
        for name in self.rules:
            self._add_job(name)  # replaces an existing job of that name
        await self.tick(now)
        log.info("scheduler.reloaded", rules=sorted(self.rules))

    async def _record_next_fires(self, now: datetime) -> None:
        for name, timing in self.timings.items():
            await self.store.schedules.record_next(name, timing.next_after(now), now)

    def _add_job(self, name: str) -> None:
        timing = self.timings[name]
        self._running_scheduler().add_job(
            self._wake,
            trigger=timing.apscheduler_trigger(),
            args=[name],
            id=name,
            name=f"schedule:{name}",
            misfire_grace_time=int(timing.grace.total_seconds()) or 1,
            coalesce=True,
            max_instances=1,
            replace_existing=True,
        )

    def _running_scheduler(self) -> Any:
        """APScheduler's runtime, started with the first job: a gateway with no scheduled rule
        (yet: a reload may bring one) keeps APScheduler out of memory (~1 MB)."""
        if self._runtime is None:
            from apscheduler.schedulers.asyncio import AsyncIOScheduler

            self._runtime = AsyncIOScheduler(timezone=UTC)
            self._runtime.start()
        return self._runtime

    async def stop(self) -> None:
        self._started = False
        if self._runtime is not None:
            self._runtime.shutdown(wait=False)
            self._runtime = None
            # Firings in flight finish (their event and its record), before the store closes.
            await asyncio.gather(*self._firing, return_exceptions=True)
            log.info("scheduler.stopped")

    async def _wake(self, name: str) -> None:
        # APScheduler woke us at a (jittered) fire time; which period it is comes from the
        # clock and the store, so a late wake, another process or a restart cannot fire twice.
        # The firing is a task of its own, shielded: APScheduler's shutdown cancels the jobs it
        # runs, and a firing whose event is stored must still record itself (stop() waits).
        firing = asyncio.create_task(self._fire(name), name=f"schedule-{name}")
        self._firing.add(firing)
        firing.add_done_callback(self._firing.discard)
        await asyncio.shield(firing)

    async def _fire(self, name: str) -> None:
        try:
            await self.fire_due(name)
        except Exception as exc:  # keep the schedule alive; the next period tries again
            log.error("scheduler.fire_failed", rule=name, error=str(exc))

    def _get(self, name: str) -> tuple[Rule, Timing]:
        if name not in self.rules:
            raise UnknownSchedule(name)
        return self.rules[name], self.timings[name]
