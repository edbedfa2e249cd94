"""Circuit breakers, one per downstream (an HTTP host, the Jira site, the SMTP server, an MCP
server): when one fails again and again, runs that need it wait instead of spending attempts.

closed ─(`failures` retryable failures in a row)─▶ open: runs wait ─(`open_for`)─▶ one probe;
the probe succeeds ─▶ closed, waiting runs woken; it fails ─▶ open again, twice as long.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import structlog

from gateway.retrying import CircuitSettings

log = structlog.get_logger(__name__)

# What a waiting run's `error` says; waking the runs of a downstream matches it exactly.
REASON = "circuit open: {}"


def downstream(tool: str, arguments: Mapping[str, Any]) -> str:
    """The downstream a call needs: the tool's family (one Jira site, one SMTP server, one MCP
    server each), with the host for a call that names a URL (`http.request`)."""
    family = tool.split(".", 1)[0]
    url = arguments.get("url")
    if isinstance(url, str) and (host := urlsplit(url).hostname):
        return f"{family} {host}"
    return family


@dataclass
class _State:
    failures: int = 0
    until: datetime | None = None  # open until then (a probe may go once it has passed)
    opens: int = 0  # failed probes since it opened: each doubles the wait
    probe_since: datetime | None = None  # a probe is in flight since then


class RunParking(Protocol):
    """What the breakers need of the run store (`gateway.store.abc.RunStore`)."""

    async def wait(self, run_id: int, until: datetime, reason: str) -> None: ...

    async def wake(self, reason: str) -> int: ...


class Circuits:
    """The circuits of one worker process. A probe's success wakes the runs every replica
    parked for that downstream (they are found by their reason in the store)."""

    def __init__(
        self,
        settings: CircuitSettings,
        runs: RunParking,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_change: Callable[[str, bool], None] = lambda name, is_open: None,
    ) -> None:
        self.settings = settings
        self._runs = runs
        self._clock = clock
        self._on_change = on_change
        self._states: dict[str, _State] = {}

    def open_circuits(self) -> dict[str, datetime]:
        """Open circuits and when each lets its next probe through."""
        return {name: s.until for name, s in self._states.items() if s.until is not None}

    def until(self, name: str) -> datetime | None:
        """None if a call to `name` may go now (closed, or it is the probe); else when the
        run should try again."""
        state = self._states.get(name)
        if state is None or state.until is None:
            return None
        now = self._clock()
        probe_stale = state.probe_since is None or (
            now - state.probe_since > timedelta(seconds=self._wait(state))
        )
        if now >= state.until and probe_stale:
            state.probe_since = now  # this call is the probe; the others wait for its outcome
            log.info("circuit.probe", downstream=name)
            return None
        return max(state.until, now + timedelta(seconds=self._wait(state)))

    async def hold(self, run_id: int, name: str) -> bool:
        """Park the run as waiting if `name`'s circuit is open; whether it was parked."""
        until = self.until(name)
        if until is None:
            return False
        await self._runs.wait(run_id, until, REASON.format(name))
        log.info("run.waiting", run_id=run_id, downstream=name, until=until.isoformat())
        return True

    async def record(self, name: str, *, failed: bool) -> None:
        """The outcome of a call to `name`: a retryable failure, or an answer (a success or a
        permanent refusal: the downstream is up either way)."""
        state = self._states.setdefault(name, _State())
        if failed:
            self._failed(name, state)
            return
        was_open = state.until is not None
        self._states.pop(name, None)
        if was_open:
            self._on_change(name, False)
            woken = await self._runs.wake(REASON.format(name))
            log.info("circuit.closed", downstream=name, woken=woken)

    def _failed(self, name: str, state: _State) -> None:
        now = self._clock()
        if state.until is not None:
            if state.probe_since is None:
                return  # a call that went before the circuit opened: no news
            state.opens += 1  # the probe failed: wait longer
        else:
            state.failures += 1
            if state.failures < self.settings.failures:
                return
            self._on_change(name, True)
        state.probe_since = None
        state.until = now + timedelta(seconds=self._wait(state))
        log.warning("circuit.open", downstream=name, until=state.until.isoformat())

    def _wait(self, state: _State) -> float:
        exponent = min(state.opens, 30)
        return float(min(self.settings.open_max, self.settings.open_for * 2**exponent))
