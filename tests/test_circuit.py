"""Circuit breakers per downstream: open after failures in a row, one probe at a time, runs
parked as waiting and woken when the probe finds the downstream back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.retrying import CircuitSettings
from gateway.runs.circuit import REASON, Circuits, downstream

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class Parking:
    """The run store's part the breakers use, in memory."""

    def __init__(self) -> None:
        self.waiting: dict[int, tuple[datetime, str]] = {}
        self.woken: list[str] = []

    async def wait(self, run_id: int, until: datetime, reason: str) -> None:
        self.waiting[run_id] = (until, reason)

    async def wake(self, reason: str) -> int:
        self.woken.append(reason)
        return sum(1 for _, r in self.waiting.values() if r == reason)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def breakers() -> tuple[Circuits, Parking, Clock, list[tuple[str, bool]]]:
    parking, clock, changes = Parking(), Clock(), []
    circuits = Circuits(
        CircuitSettings(failures=3, open_for=30, open_max=100),
        parking,
        clock=clock,
        on_change=lambda name, is_open: changes.append((name, is_open)),
    )
    return circuits, parking, clock, changes


def test_downstream_is_the_family_or_the_host_called() -> None:
    assert downstream("jira.create_issue", {"project": "OPS"}) == "jira"
    assert downstream("http.request", {"url": "https://api.example.com/x"}) == (
        "http api.example.com"
    )
    assert downstream("github.add_comment", {"url": 3}) == "github"


async def test_failures_below_the_threshold_keep_it_closed() -> None:
    circuits, _parking, _, changes = breakers()
    for _ in range(2):
        await circuits.record("jira", failed=True)
    assert not await circuits.hold(1, "jira")
    await circuits.record("jira", failed=False)  # an answer resets the count
    await circuits.record("jira", failed=True)
    await circuits.record("jira", failed=True)
    assert circuits.open_circuits() == {}
    assert changes == []


async def test_an_open_circuit_parks_runs_until_the_probe_time() -> None:
    circuits, parking, _clock, changes = breakers()
    for _ in range(3):
        await circuits.record("jira", failed=True)
    assert changes == [("jira", True)]
    assert await circuits.hold(7, "jira")
    assert parking.waiting[7] == (T0 + timedelta(seconds=30), REASON.format("jira"))
    assert not await circuits.hold(8, "smtp")  # other downstreams are not held


async def test_one_probe_goes_and_its_success_wakes_the_waiting_runs() -> None:
    circuits, parking, clock, changes = breakers()
    for _ in range(3):
        await circuits.record("jira", failed=True)
    await circuits.hold(7, "jira")
    clock.now = T0 + timedelta(seconds=31)
    assert not await circuits.hold(8, "jira")  # the probe
    assert await circuits.hold(9, "jira")  # others wait for its outcome
    await circuits.record("jira", failed=False)
    assert parking.woken == [REASON.format("jira")]
    assert changes == [("jira", True), ("jira", False)]
    assert not await circuits.hold(10, "jira")


async def test_a_failed_probe_doubles_the_wait_up_to_the_cap() -> None:
    circuits, _parking, clock, _ = breakers()
    for _ in range(3):
        await circuits.record("jira", failed=True)
    waits = []
    for _ in range(4):
        clock.now = circuits.open_circuits()["jira"]
        assert not await circuits.hold(1, "jira")  # the probe
        await circuits.record("jira", failed=True)
        waits.append((circuits.open_circuits()["jira"] - clock.now).total_seconds())
    assert waits == [60, 100, 100, 100]


async def test_a_probe_that_never_reports_lets_another_go() -> None:
    circuits, _, clock, _ = breakers()
    for _ in range(3):
        await circuits.record("jira", failed=True)
    clock.now = T0 + timedelta(seconds=31)
    assert not await circuits.hold(1, "jira")  # the probe; its run is cut off
    assert await circuits.hold(2, "jira")
    clock.now += timedelta(seconds=31)
    assert not await circuits.hold(3, "jira")
