"""The `retention:` section of `gateway.yaml`: how long each kind of history is kept.

Durations are written `30d`, `12h`, `15m` or `45s`; every default is shown by `gateway check`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value: Any) -> Any:
    """`30d` → 30 days; numbers are seconds; anything else is left to pydantic to refuse."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a duration such as 30d, 12h, 15m or 45s")
        return timedelta(**{_UNIT[match[2]]: int(match[1])})
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def shown(value: timedelta) -> str:
    """A duration as it is written in the config (`30d`, `12h`)."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class SourceRetention(BaseModel):
    """A source's own body retention (e.g. shorter for a chatty source)."""

    model_config = ConfigDict(extra="forbid")

    bodies: Duration


class RuleRetention(BaseModel):
    """A rule's own run retention (e.g. a year for an audit trail)."""

    model_config = ConfigDict(extra="forbid")

    runs: Duration


class RetentionConfig(BaseModel):
    """How long history is kept; nothing unfinished is ever pruned.

    - `bodies`: raw body and headers of an event whose routing is done (the row stays).
    - `runs`: finished runs (succeeded, failed, cancelled) with their steps and model turns;
      dead runs and runs awaiting approval stay until an operator handles them.
    - `dedup_keys`: at least this long an event's row (its source, delivery id and body digest,
      a few hundred bytes) stays after its body is gone, so a late redelivery is still a
      duplicate; rows go when both this and `runs` have passed and no run refers to them.
    - `threads`: conversation memory, by last use.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    bodies: Duration = timedelta(days=30)
    runs: Duration = timedelta(days=90)
    dedup_keys: Duration = timedelta(days=7)
    threads: Duration = timedelta(days=90)
    # How often the pruning job runs (once across replicas), and how many rows one
    # transaction deletes: small batches keep the write lock short for ingest.
    every: Duration = timedelta(hours=1)
    batch: int = Field(100, ge=1, le=10_000)
    # After each batch, rest `rest` times as long as the batch took (at least `pause`
    # seconds): with 1.0 the job uses the database at most half the time, so ingest and the
    # worker keep their share of the writer and the CPU (bench/retention).
    pause: float = Field(0.01, ge=0, le=10)
    rest: float = Field(1.0, ge=0, le=100)
    # Where pruned events and runs are written first (compressed JSON Lines): a directory,
    # or s3://bucket/prefix/ (needs the `s3` extra). None: pruned history is not kept.
    archive: str | None = None
    # S3-compatible endpoint (MinIO, Ceph...) for an s3:// archive; None: AWS.
    archive_endpoint: str | None = None
    # Below this much free disk space (bytes) beside the store, /readyz fails and webhooks
    # are answered 503 (senders retry) before the disk is full. 0: no floor.
    min_free_bytes: int = Field(1024**3, ge=0)
    sources: dict[str, SourceRetention] = Field(default_factory=dict)
    rules: dict[str, RuleRetention] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _positive(self) -> RetentionConfig:
        durations = [(n, getattr(self, n)) for n in ("bodies", "runs", "dedup_keys", "threads")]
        durations += [("every", self.every)]
        durations += [(f"sources.{n}.bodies", o.bodies) for n, o in self.sources.items()]
        durations += [(f"rules.{n}.runs", o.runs) for n, o in self.rules.items()]
        for name, value in durations:
            if value <= timedelta(0):
                raise ValueError(f"{name} must be longer than 0")
        return self

    def summary(self) -> list[str]:
        """What `gateway check` prints: every setting in force, defaults included."""
        if not self.enabled:
            return ["retention: off (nothing is pruned)"]
        lines = [
            f"retention: bodies {shown(self.bodies)}, runs {shown(self.runs)}, "
            f"dedup keys {shown(self.dedup_keys)}, threads {shown(self.threads)}, "
            f"pruned every {shown(self.every)} in batches of {self.batch}",
            f"retention: archive {self.archive or 'none (pruned history is gone)'}, "
            f"free-disk floor {self.min_free_bytes} bytes",
        ]
        for name, source in sorted(self.sources.items()):
            lines.append(f"retention: source {name}: bodies {shown(source.bodies)}")
        for name, rule in sorted(self.rules.items()):
            lines.append(f"retention: rule {name}: runs {shown(rule.runs)}")
        return lines
