"""Scheduled rules: APScheduler 3 wakes each rule, the store keeps one event per fire time.

`Scheduler` runs in processes with the scheduler role; `list_schedules` and `fire` back the CLI.
"""

from __future__ import annotations

from gateway.rules.periods import periods
from gateway.scheduler.commands import fire, list_schedules
from gateway.scheduler.service import (
    SOURCE,
    Firing,
    Scheduler,
    UnknownSchedule,
    fire_now,
    schedule_event,
)
from gateway.scheduler.timing import Timing, parse_every

__all__ = [
    "SOURCE",
    "Firing",
    "Scheduler",
    "Timing",
    "UnknownSchedule",
    "fire",
    "fire_now",
    "list_schedules",
    "parse_every",
    "periods",
    "schedule_event",
]
