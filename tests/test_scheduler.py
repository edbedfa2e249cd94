"""Scheduled rules: fire times (DST included), one event per period across processes, catch-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from gateway.errors import ConfigError
from gateway.rules.model import Rule
from gateway.scheduler import (
    Scheduler,
    Timing,
    UnknownSchedule,
    fire,
    list_schedules,
    parse_every,
    periods,
)
from gateway.scheduler.jitter import JitteredTrigger
from gateway.store import Event, Store

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def rule(name: str = "weekly", **schedule: Any) -> Rule:
    schedule.setdefault("timezone", "UTC")
    return Rule.model_validate(
        {"name": name, "schedule": schedule, "actions": [{"log.record": {"message": "hi"}}]}
    )


def at(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
    *,
    tz: tzinfo = UTC,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=tz)


def utc(*parts: int) -> datetime:
    return at(*parts)


@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[Callable[[], Any]]:
    """Open stores on one SQLite file, as separate processes would; all closed at the end."""
    opened: list[Store] = []

    async def open_one() -> Store:
        store = Store(f"sqlite:///{tmp_path / 'gateway.db'}")
        await store.open(migrate=True)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: Callable[[], Any]) -> Store:
    opened: Store = await open_store()
    return opened


async def schedule_events(store: Store) -> list[Event]:
    return list(reversed(await store.events.find(source="schedule", limit=1000)))


def body(event: Event) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(event.body)
    return loaded


# Fire times, from the APScheduler trigger (pure, no store).


def test_weekly_cron_rule_fires_monday_0800_paris_in_winter_and_summer() -> None:
    timing = Timing.of(rule(cron="0 8 * * MON", timezone="Europe/Paris"))
    fires = timing.upcoming(utc(2026, 3, 18), 3)
    assert fires == [utc(2026, 3, 23, 7), utc(2026, 3, 30, 6), utc(2026, 4, 6, 6)]
    assert all(f.astimezone(PARIS).hour == 8 for f in fires)


def test_paris_spring_forward_fires_the_missing_0230_once_an_hour_later() -> None:
    # 2026-03-29 02:00 CET jumps to 03:00 CEST: 02:30 does not exist that night.
    # APScheduler 3 fires once, at 01:30 UTC (03:30 CEST), and at 02:30 CEST afterwards.
    timing = Timing.of(rule(cron="30 2 * * *", timezone="Europe/Paris"))
    fires = list(timing.fires(utc(2026, 3, 27, 12), utc(2026, 3, 31, 12)))
    assert fires == [
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 30, 0, 30),
        utc(2026, 3, 31, 0, 30),
    ]
    assert [f.astimezone(PARIS).strftime("%H:%M %Z") for f in fires] == [
        "02:30 CET",
        "03:30 CEST",
        "02:30 CEST",
        "02:30 CEST",
    ]
    # A process started after the change (03:15 CEST) agrees on the 03:30 CEST firing.
    assert timing.next_after(utc(2026, 3, 29, 1, 15)) == utc(2026, 3, 29, 1, 30)


def test_paris_fall_back_fires_the_repeated_0230_twice() -> None:
    # 2026-10-25 03:00 CEST falls back to 02:00 CET: 02:30 happens twice, and APScheduler 3
    # fires at both (00:30 UTC and 01:30 UTC).
    timing = Timing.of(rule(cron="30 2 * * *", timezone="Europe/Paris"))
    fires = list(timing.fires(utc(2026, 10, 23, 12), utc(2026, 10, 26, 12)))
    assert fires == [
        utc(2026, 10, 24, 0, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 30),
        utc(2026, 10, 26, 1, 30),
    ]


def test_new_york_rule_follows_eastern_time_across_dst() -> None:
    # DST starts in New York on 2026-03-08 and ends on 2026-11-01.
    timing = Timing.of(rule(cron="0 9 * * *", timezone="America/New_York"))
    assert timing.upcoming(utc(2026, 3, 7), 2) == [utc(2026, 3, 7, 14), utc(2026, 3, 8, 13)]
    assert timing.upcoming(utc(2026, 10, 31), 2) == [utc(2026, 10, 31, 13), utc(2026, 11, 1, 14)]


def test_new_york_missing_0230_on_dst_start_fires_at_0330_edt() -> None:
    timing = Timing.of(rule(cron="30 2 * * *", timezone="America/New_York"))
    fires = timing.upcoming(utc(2026, 3, 7, 12), 2)
    assert fires == [utc(2026, 3, 8, 7, 30), utc(2026, 3, 9, 6, 30)]
    assert fires[0].astimezone(NEW_YORK).strftime("%H:%M %Z") == "03:30 EDT"


def test_interval_rule_fires_on_a_grid_shared_by_every_process() -> None:
    timing = Timing.of(rule(every="15m"))
    fires = timing.upcoming(utc(2026, 5, 4, 10, 7, 13), 3)
    assert fires == [utc(2026, 5, 4, 10, 15), utc(2026, 5, 4, 10, 30), utc(2026, 5, 4, 10, 45)]
    # Built again (another process, later), it has the same fire times.
    assert Timing.of(rule(every="15m")).upcoming(utc(2026, 5, 4, 10, 7, 13), 3) == fires


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1d", timedelta(days=1)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(minutes=90)),
    ],
)
def test_every_accepts_units_and_sums(text: str, expected: timedelta) -> None:
    assert parse_every(text) == expected


@pytest.mark.parametrize("text", ["", "5", "5x", "0s", "m5", "5m and more"])
def test_every_rejects_what_is_not_an_interval(text: str) -> None:
    with pytest.raises(ValueError, match="every"):
        parse_every(text)


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ({"cron": "0 8 * * MON", "timezone": "Europe/Pariss"}, "unknown zone"),
        ({"cron": "0 8 * *"}, "schedule.cron"),
        ({"every": "soon"}, "schedule.every"),
        ({}, "exactly one of"),
        ({"cron": "0 8 * * *", "every": "1h"}, "exactly one of"),
    ],
)
def test_a_schedule_that_cannot_run_is_a_config_error(
    schedule: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        Timing.of(rule(**schedule))


def test_jitter_delays_each_fire_time_without_drifting_off_the_grid() -> None:
    timing = Timing.of(rule(every="1m", jitter=20))
    trigger = timing.apscheduler_trigger()
    assert isinstance(trigger, JitteredTrigger)
    now = utc(2026, 5, 4, 10, 0, 30)
    fire_time = trigger.get_next_fire_time(None, now)
    for minute in range(1, 60):
        nominal = utc(2026, 5, 4, 10, minute)
        assert fire_time is not None
        assert nominal <= fire_time <= nominal + timedelta(seconds=20)
        fire_time = trigger.get_next_fire_time(fire_time, fire_time)


# Firing into the store, with an injected clock.


async def test_cron_rule_fires_once_at_its_instant(store: Store) -> None:
    weekly = rule(cron="0 8 * * MON", timezone="Europe/Paris")
    scheduler = Scheduler(store, [weekly])
    assert await scheduler.tick(at(2026, 3, 23, 7, 59, 59, tz=PARIS)) == []
    [firing] = await scheduler.tick(at(2026, 3, 23, 8, 0, 0, 250000, tz=PARIS))
    assert firing.fired_at == utc(2026, 3, 23, 7)
    assert not firing.duplicate
    assert await scheduler.tick(at(2026, 3, 23, 8, 0, 30, tz=PARIS)) == []
    [event] = await schedule_events(store)
    assert (event.source, event.provider, event.type) == ("schedule", "schedule", "weekly")
    assert event.delivery_id == "weekly@2026-03-23T07:00:00+00:00"
    assert body(event) == {
        "rule": "weekly",
        "fired_at": "2026-03-23T07:00:00+00:00",
        "timezone": "Europe/Paris",
        "manual": False,
    }


async def test_paris_fall_back_makes_two_events_and_spring_forward_one(store: Store) -> None:
    nightly = rule("nightly", cron="30 2 * * *", timezone="Europe/Paris")
    scheduler = Scheduler(store, [nightly])
    fired = []
    # A tick every five minutes through both transition nights.
    for start in (utc(2026, 3, 28, 22), utc(2026, 10, 24, 22)):
        for step in range(12 * 5):
            fired += await scheduler.tick(start + timedelta(minutes=5 * step))
    assert [f.fired_at for f in fired] == [
        utc(2026, 3, 29, 1, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 25, 1, 30),
    ]
    assert len(await schedule_events(store)) == 3


async def test_interval_rule_fires_each_period(store: Store) -> None:
    scheduler = Scheduler(store, [rule("sweep", every="15m")])
    start = utc(2026, 5, 4, 10, 0, 0, 100000)
    fired = []
    for second in range(0, 3600, 10):
        fired += await scheduler.tick(start + timedelta(seconds=second))
    assert [f.fired_at for f in fired] == [
        utc(2026, 5, 4, 10, 0),
        utc(2026, 5, 4, 10, 15),
        utc(2026, 5, 4, 10, 30),
        utc(2026, 5, 4, 10, 45),
    ]


async def test_two_schedulers_on_one_store_fire_one_event_per_period(
    open_store: Callable[[], Any],
) -> None:
    daily = rule("daily", cron="0 8 * * *", timezone="America/New_York")
    first = Scheduler(await open_store(), [daily])
    second = Scheduler(await open_store(), [daily])
    for day in (3, 4, 5):
        now = at(2026, 6, day, 8, 0, 1, tz=NEW_YORK)
        both = await asyncio.gather(first.tick(now), second.tick(now + timedelta(seconds=2)))
        firings = [f for fired in both for f in fired]
        # Both may try; the store keeps one event for the period.
        assert len({f.stored.id for f in firings}) == 1
        assert sum(not f.duplicate for f in firings) == 1
    events = await schedule_events(first.store)
    assert [body(e)["fired_at"] for e in events] == [
        "2026-06-03T12:00:00+00:00",
        "2026-06-04T12:00:00+00:00",
        "2026-06-05T12:00:00+00:00",
    ]


async def test_restart_within_the_period_does_not_fire_again(
    open_store: Callable[[], Any],
) -> None:
    hourly = rule("hourly", cron="0 * * * *")
    before = Scheduler(await open_store(), [hourly])
    assert len(await before.tick(utc(2026, 5, 4, 10, 0, 0, 500000))) == 1
    await before.store.close()
    # A new process, 40 seconds later, inside the misfire grace of the same fire time.
    after = Scheduler(await open_store(), [hourly])
    assert await after.tick(utc(2026, 5, 4, 10, 0, 40)) == []
    assert len(await schedule_events(after.store)) == 1


async def test_a_restart_that_lost_the_schedule_row_still_stores_one_event(
    store: Store,
) -> None:
    hourly = rule("hourly", cron="0 * * * *")
    [first] = await Scheduler(store, [hourly]).tick(utc(2026, 5, 4, 10, 0, 1))
    await _forget_schedules(store)
    [again] = await Scheduler(store, [hourly]).tick(utc(2026, 5, 4, 10, 0, 30))
    assert again.duplicate
    assert again.stored.id == first.stored.id
    assert len(await schedule_events(store)) == 1


async def test_catch_up_after_an_outage_fires_exactly_once(store: Store) -> None:
    daily = rule("daily", cron="0 8 * * *", timezone="Europe/Paris", catch_up=True)
    scheduler = Scheduler(store, [daily])
    assert len(await scheduler.tick(at(2026, 6, 1, 8, 0, 5, tz=PARIS))) == 1
    # Down from Monday morning until Thursday noon: three periods missed, fired as one,
    # standing for the latest of them.
    restarted = Scheduler(store, [daily])
    [caught_up] = await restarted.tick(at(2026, 6, 4, 12, 0, tz=PARIS))
    assert caught_up.fired_at == at(2026, 6, 4, 8, 0, tz=PARIS)
    assert await restarted.tick(at(2026, 6, 4, 12, 1, tz=PARIS)) == []
    assert len(await schedule_events(store)) == 2


async def test_without_catch_up_missed_periods_are_skipped(store: Store) -> None:
    daily = rule("daily", cron="0 8 * * *", timezone="Europe/Paris")
    scheduler = Scheduler(store, [daily])
    assert len(await scheduler.tick(at(2026, 6, 1, 8, 0, 5, tz=PARIS))) == 1
    restarted = Scheduler(store, [daily])
    assert await restarted.tick(at(2026, 6, 4, 12, 0, tz=PARIS)) == []
    [next_day] = await restarted.tick(at(2026, 6, 5, 8, 0, 2, tz=PARIS))
    assert next_day.fired_at == at(2026, 6, 5, 8, 0, tz=PARIS)
    assert len(await schedule_events(store)) == 2


async def test_a_wake_later_than_the_misfire_grace_is_skipped(store: Store) -> None:
    scheduler = Scheduler(store, [rule("hourly", cron="0 * * * *", misfire_grace=30)])
    assert await scheduler.tick(utc(2026, 5, 4, 10, 0, 31)) == []
    assert len(await scheduler.tick(utc(2026, 5, 4, 11, 0, 29))) == 1


async def test_a_new_catch_up_rule_does_not_fire_for_periods_before_it_existed(
    store: Store,
) -> None:
    scheduler = Scheduler(store, [rule("daily", cron="0 8 * * *", catch_up=True)])
    assert await scheduler.tick(utc(2026, 6, 4, 12)) == []


async def test_manual_fire_creates_a_distinct_event_each_time(store: Store) -> None:
    weekly = rule(cron="0 8 * * MON", timezone="Europe/Paris")
    scheduler = Scheduler(store, [weekly])
    now = utc(2026, 3, 23, 7)
    scheduled = await scheduler.tick(now)
    manual = await scheduler.fire_now("weekly", now)
    stored = await fire(store, weekly)
    ids = {scheduled[0].stored.id, manual.stored.id, stored.id}
    assert len(ids) == 3
    events = await schedule_events(store)
    assert [body(e)["manual"] for e in events] == [False, True, True]
    assert events[1].delivery_id.startswith("weekly@2026-03-23T07:00:00+00:00#manual-")
    # A manual firing is no scheduled period: the next tick still knows the last one.
    assert await scheduler.tick(now + timedelta(seconds=5)) == []
    row = (await store.schedules.load())["weekly"]
    assert row.last_fire_at == now
    assert (row.last_result, row.last_event_id) == ("manual", stored.id)


async def test_firing_an_unknown_rule_names_it(store: Store) -> None:
    with pytest.raises(UnknownSchedule, match="nope"):
        await Scheduler(store, [rule(cron="0 8 * * *")]).fire_now("nope")


async def test_list_schedules_shows_next_fires_in_both_zones_and_the_last_fire(
    store: Store,
) -> None:
    weekly = rule(cron="0 8 * * MON", timezone="Europe/Paris")
    sweep = rule("sweep", every="1h")
    [firing] = await Scheduler(store, [weekly]).tick(utc(2026, 3, 23, 7, 0, 1))
    listing = await list_schedules(store, [weekly, sweep], utc(2026, 3, 24), count=2)
    assert listing[0] == {
        "rule": "weekly",
        "cron": "0 8 * * MON",
        "every": None,
        "timezone": "Europe/Paris",
        "catch_up": False,
        "jitter": None,
        "misfire_grace": None,
        "next": [
            {"local": "2026-03-30T08:00:00+02:00", "utc": "2026-03-30T06:00:00+00:00"},
            {"local": "2026-04-06T08:00:00+02:00", "utc": "2026-04-06T06:00:00+00:00"},
        ],
        "last_fire_at": "2026-03-23T07:00:00+00:00",
        "last_event_id": firing.stored.id,
        "last_result": "fired",
    }
    assert listing[1]["rule"] == "sweep"
    assert listing[1]["last_fire_at"] is None
    assert [n["utc"] for n in listing[1]["next"]] == [
        "2026-03-24T01:00:00+00:00",
        "2026-03-24T02:00:00+00:00",
    ]


async def test_the_schedule_row_keeps_the_latest_fire_when_a_late_writer_arrives(
    store: Store,
) -> None:
    now = utc(2026, 5, 4, 12)
    for fired_at in (utc(2026, 5, 4, 11), utc(2026, 5, 4, 10)):
        await store.schedules.record_fire(
            "r", fired_at=fired_at, event_id=1, result="fired", next_fire_at=None, now=now
        )
    assert await store.schedules.last_fire("r") == utc(2026, 5, 4, 11)


async def test_start_catches_up_and_apscheduler_fires_on_time(store: Store) -> None:
    # The only test on the real clock: a one-second interval, run for about two seconds.
    scheduler = Scheduler(store, [rule("tick", every="1s")])
    await scheduler.start()
    try:
        for _ in range(60):
            await asyncio.sleep(0.05)
            if len(await schedule_events(store)) >= 2:
                break
    finally:
        await scheduler.stop()
    events = await schedule_events(store)
    assert len(events) >= 2
    fire_times = [datetime.fromisoformat(body(e)["fired_at"]) for e in events]
    assert all(t.microsecond == 0 for t in fire_times)
    assert len(set(fire_times)) == len(fire_times)
    row = (await store.schedules.load())["tick"]
    assert row.next_fire_at is not None
    assert row.last_fire_at == max(fire_times)


async def test_stop_lets_a_firing_in_flight_record_itself(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow database: the firing's event is stored, its schedule row not yet, when stop() comes.
    record_fire = store.schedules.record_fire

    async def slow_record_fire(*args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(0.3)
        await record_fire(*args, **kwargs)

    monkeypatch.setattr(store.schedules, "record_fire", slow_record_fire)
    scheduler = Scheduler(store, [rule("tick", every="1s")])
    await scheduler.start()  # fires the current period itself, then APScheduler the next
    try:
        for _ in range(60):
            await asyncio.sleep(0.05)
            if len(await schedule_events(store)) >= 2:
                break
    finally:
        await scheduler.stop()
    fire_times = [datetime.fromisoformat(body(e)["fired_at"]) for e in await schedule_events(store)]
    assert len(fire_times) >= 2
    assert (await store.schedules.load())["tick"].last_fire_at == max(fire_times)


# Template helpers.


def test_periods_are_calendar_periods_in_the_rule_zone() -> None:
    # Monday 2026-03-30 08:00 in Paris, the first Monday after the DST change.
    found = periods("2026-03-30T06:00:00+00:00", "Europe/Paris")
    assert found["last_week"] == {
        "start": "2026-03-23T00:00:00+01:00",
        "end": "2026-03-30T00:00:00+02:00",
        "start_utc": "2026-03-22T23:00:00+00:00",
        "end_utc": "2026-03-29T22:00:00+00:00",
        "start_date": "2026-03-23",
        "end_date": "2026-03-30",
        "last_date": "2026-03-29",
    }
    assert (found["yesterday"]["start_date"], found["today"]["start_date"]) == (
        "2026-03-29",
        "2026-03-30",
    )
    assert (found["last_month"]["start_date"], found["last_month"]["last_date"]) == (
        "2026-02-01",
        "2026-02-28",
    )


def test_periods_use_the_local_date_not_the_utc_one() -> None:
    # 23:30 UTC on Sunday is already Monday in Paris: last week is the one just ended.
    found = periods(utc(2026, 1, 4, 23, 30), "Europe/Paris")
    assert found["today"]["start_date"] == "2026-01-05"
    assert found["last_week"]["start_date"] == "2025-12-29"
    assert found["last_month"]["start_date"] == "2025-12-01"


async def _forget_schedules(store: Store) -> None:
    from gateway.store.schema import schedules

    async with store.engine.begin() as conn:
        await conn.execute(schedules.delete())


@pytest.mark.parametrize(
    ("cron", "weekday"),
    [
        ("0 8 * * 0", "Sunday"),
        ("0 8 * * 7", "Sunday"),
        ("0 8 * * 1", "Monday"),
        ("0 8 * * 6", "Saturday"),
    ],
)
def test_numeric_days_of_the_week_mean_what_they_mean_in_crontab(cron: str, weekday: str) -> None:
    timing = Timing.of(rule(cron=cron, timezone="UTC"))

    fire = timing.next_after(datetime(2026, 11, 25, 12, tzinfo=UTC))

    assert fire is not None
    assert fire.strftime("%A") == weekday
