"""When a scheduled rule fires: its APScheduler trigger, and which fire time is due at an instant.

Pure functions of (schedule, last fire, now), so the scheduler is testable with any clock.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.errors import ConfigError
from gateway.rules.loader import Problem
from gateway.rules.model import Rule

if TYPE_CHECKING:
    from apscheduler.triggers.base import BaseTrigger

# How late a firing may still run when the rule sets no `misfire_grace` (seconds).
DEFAULT_MISFIRE_GRACE = 60
# Interval schedules count from here, not from process start, so every scheduler process
# computes the same fire times (a Monday at midnight, in the rule's zone).
INTERVAL_ANCHOR = datetime(2001, 1, 1)

# Longer than any DST shift: a cron chain started this early crosses a change as APScheduler's
# own chain (from the previous fire time) does.
CRON_LOOKBEHIND = timedelta(hours=3)

_EVERY = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
TICK = timedelta(microseconds=1)


def parse_every(text: str) -> timedelta:
    """`30s`, `5m`, `1h`, `1d`, `2w`, or a sum such as `1h30m`."""
    compact = text.strip().lower()
    parts = _EVERY.findall(compact)
    if not parts or _EVERY.sub("", compact).strip():
        raise ValueError(f"every: {text!r} is not an interval such as 30s, 5m, 1h, 1d or 1h30m")
    interval = timedelta()
    try:
        for amount, unit in parts:
            interval += timedelta(**{_UNITS[unit]: int(amount)})
    except OverflowError:
        raise ValueError(f"every: {text!r} is longer than any interval can be") from None
    if interval <= timedelta(0):
        raise ValueError(f"every: {text!r} must be longer than zero")
    return interval


def schedule_problems(rule: Rule) -> list[Problem]:
    """A cron, interval or zone the scheduler could not run, found at load, not at start: the
    check `gateway.ruleset.load_ruleset` hands the rules loader."""
    if rule.schedule is None:
        return []
    try:
        # The scheduler computes the next fire time at start and on reload: so does the check.
        Timing.of(rule).next_after(datetime.now(UTC))
    except (ValueError, OverflowError) as exc:
        return [(("schedule",), f"no fire time can be computed: {exc}")]
    except ConfigError as exc:
        found: list[Problem] = []
        for problem in exc.problems:
            # "rule NAME: schedule.cron: message": point at the field it names.
            detail = problem.removeprefix(f"rule {rule.name}: ")
            field, sep, message = detail.partition(": ")
            path = tuple(field.split(".")) if sep and field.startswith("schedule") else ()
            found.append((path or ("schedule",), message if path else detail))
        return found
    return []


@dataclass(frozen=True)
class Timing:
    """A rule's `schedule:` block made executable: fire times without jitter, zone, grace."""

    rule: str
    expression: str
    zone: ZoneInfo
    trigger: Any  # an APScheduler 3 trigger, jitter-free: fire times that identify firings
    jitter: int
    grace: timedelta
    catch_up: bool
    lookbehind: timedelta = timedelta(0)

    @classmethod
    def of(cls, rule: Rule) -> Timing:
        """Build from a rule; `ConfigError` if its schedule cannot run."""
        schedule = rule.schedule
        if schedule is None:
            raise ConfigError([f"rule {rule.name}: has no schedule"])
        problems: list[str] = []
        try:
            zone = ZoneInfo(schedule.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(
                f"rule {rule.name}: schedule.timezone: unknown zone {schedule.timezone!r}"
            )
            zone = ZoneInfo("UTC")
        # APScheduler's triggers compute the fire times; imported for a scheduled rule only.
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        trigger: Any = None
        expression = ""
        if (schedule.cron is None) == (schedule.every is None):
            problems.append(f"rule {rule.name}: schedule: needs exactly one of `cron` or `every`")
        elif schedule.cron is not None:
            expression = f"cron {schedule.cron}"
            try:
                trigger = CronTrigger.from_crontab(crontab_days(schedule.cron), timezone=zone)
            except ValueError as exc:
                problems.append(f"rule {rule.name}: schedule.cron: {exc}")
        elif schedule.every is not None:
            expression = f"every {schedule.every}"
            try:
                interval = parse_every(schedule.every)
            except ValueError as exc:
                problems.append(f"rule {rule.name}: schedule.{exc}")
            else:
                trigger = IntervalTrigger(
                    seconds=interval.total_seconds(),
                    start_date=INTERVAL_ANCHOR.replace(tzinfo=zone),
                    timezone=zone,
                )
        for key in ("jitter", "misfire_grace"):
            value = getattr(schedule, key)
            if value is not None and value < 0:
                problems.append(f"rule {rule.name}: schedule.{key}: must be zero or more seconds")
        if problems:
            raise ConfigError(problems)
        grace = schedule.misfire_grace
        return cls(
            rule=rule.name,
            expression=expression,
            zone=zone,
            trigger=trigger,
            jitter=schedule.jitter or 0,
            grace=timedelta(seconds=DEFAULT_MISFIRE_GRACE if grace is None else grace),
            catch_up=schedule.catch_up,
            # Intervals count elapsed time; cron wall times need a run-up past DST changes.
            lookbehind=CRON_LOOKBEHIND if schedule.cron is not None else timedelta(0),
        )

    def next_after(self, instant: datetime) -> datetime | None:
        """The first fire time strictly after `instant`, in UTC (None if there is none)."""
        return next(self._chain(instant), None)

    def fires(self, since: datetime, until: datetime) -> Iterator[datetime]:
        """Fire times in (since, until], in UTC, oldest first."""
        return itertools.takewhile(lambda found: found <= until, self._chain(since))

    def upcoming(self, now: datetime, count: int) -> list[datetime]:
        """The next `count` fire times after `now`, in UTC."""
        return list(itertools.islice(self._chain(now), count))

    def latest(self, since: datetime, until: datetime) -> datetime | None:
        """The last fire time in (since, until], without walking every period since `since`."""
        window = timedelta(minutes=1)
        while True:
            start = max(since, until - window)
            last = max(self.fires(start, until), default=None)
            if last is not None or start == since:
                return last
            # The window grows fourfold until it holds a fire time, so it holds only a few.
            window *= 4

    def _chain(self, after: datetime) -> Iterator[datetime]:
        """Fire times after `after` (UTC), each computed from the one before, as APScheduler does.

        A wall time skipped by a DST change is only found from a fire time before the change,
        so a cron chain starts a few hours early: every process then agrees on the fire times.
        """
        after = after.astimezone(UTC)
        found = self.trigger.get_next_fire_time(None, after - self.lookbehind + TICK)
        last = after - self.lookbehind
        stuck = timedelta(minutes=1)
        while found is not None:
            instant = found.astimezone(UTC)
            if instant <= last:
                # Never loop on a time that does not advance: probe further on.
                found = self.trigger.get_next_fire_time(None, last + stuck)
                stuck *= 2
                continue
            stuck = timedelta(minutes=1)
            last = instant
            if instant > after:
                yield instant
            # Chained from the trigger's own value, not the UTC one: in a repeated (fold)
            # hour the UTC one leads back to the same fire time.
            found = self.trigger.get_next_fire_time(found, found)

    def due(self, last_fire: datetime | None, now: datetime) -> datetime | None:
        """The fire time to fire at `now`, given the last one fired (by any process).

        A fire time counts if it is newer than `last_fire` and either no older than the
        jitter plus the misfire grace, or (with `catch_up`) missed while nothing ran: missed
        periods coalesce into their latest fire time, fired once.
        """
        now = now.astimezone(UTC)
        since = now - self.grace - timedelta(seconds=self.jitter)
        if last_fire is not None:
            last_fire = last_fire.astimezone(UTC)
            since = last_fire if self.catch_up else max(since, last_fire)
        if since >= now:
            return None
        return self.latest(since, now)

    def apscheduler_trigger(self) -> BaseTrigger:
        """The trigger the APScheduler runtime wakes this rule with (jitter applied)."""
        from gateway.scheduler.jitter import JitteredTrigger

        return JitteredTrigger(self)


_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def crontab_days(expression: str) -> str:
    """The expression with crontab's numeric days of the week turned into names.

    In crontab, 0 and 7 are Sunday; APScheduler's `from_crontab` reads 0 as Monday. Names mean
    the same to both, so `0 8 * * 1-5` keeps its crontab meaning (Monday to Friday).
    """
    fields = expression.split()
    if len(fields) != 5:
        return expression  # APScheduler reports the wrong field count itself
    fields[4] = re.sub(
        r"(?<![/\w])([0-7])(?![\w])", lambda m: _DAY_NAMES[int(m.group(1))], fields[4]
    )
    return " ".join(fields)
