"""Running claimed runs: the retry policy, and executors chosen by the rule's kind.

The worker hands each run to its kind's executor and knows nothing else of what runs do.
"""

from __future__ import annotations

import ast
import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, WorkerConfig
from gateway.rules.loader import RuleSet
from gateway.rules.model import Rule
from gateway.runs.executor import RunServices
from gateway.runs.retry import GiveUp, Retry, RetryPolicy
from gateway.store import Event, NewEvent, Run, Step, Store
from gateway.store.status import RunStatus
from gateway.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = Config(worker=WorkerConfig(max_attempts=4, backoff_base=2.0, backoff_max=5.0))


def run_at(attempt: int) -> Run:
    now = datetime.now(UTC)
    return Run(1, 1, "r", "actions", "live", "running", None, attempt, None, now, now, None, None)


@pytest.mark.parametrize(
    ("attempt", "shortest", "longest"), [(1, 1.0, 2.0), (2, 2.0, 4.0), (3, 2.5, 5.0)]
)
def test_retry_backs_off_exponentially_with_jitter_up_to_the_cap(
    attempt: int, shortest: float, longest: float
) -> None:
    low, high = RetryPolicy(SETTINGS, lambda: 0.0), RetryPolicy(SETTINGS, lambda: 1.0)

    assert low.decide(run_at(attempt), "503", None) == Retry(shortest)
    assert high.decide(run_at(attempt), "503", None) == Retry(longest)


def test_retry_waits_at_least_what_the_remote_asked() -> None:
    policy = RetryPolicy(SETTINGS, lambda: 0.0)

    assert policy.decide(run_at(1), "429", 30.0) == Retry(30.0)
    assert policy.decide(run_at(1), "429", 0.5) == Retry(1.0)


def test_the_last_attempt_gives_up_naming_the_last_error() -> None:
    policy = RetryPolicy(SETTINGS)

    assert policy.decide(run_at(4), "503 from remote", 1.0) == GiveUp(
        "gave up after 4 attempts: 503 from remote"
    )


def test_runs_and_assistants_never_import_the_worker() -> None:
    found = []
    for folder in ("gateway/runs", "gateway/assistant", "gateway/rules"):
        for path in sorted((ROOT / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [node.module] if isinstance(node, ast.ImportFrom) else []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n == "gateway.worker"]
    assert found == []


ASSISTANT = Rule.model_validate(
    {"name": "ask", "on": {"source": "shop", "event": "*"}, "assistant": {"prompt": "hi"}}
)


class Recorder:
    """An executor that ends each run it is given, succeeded, through the worker's services."""

    def __init__(self, services: RunServices) -> None:
        self.services = services
        self.executed: list[tuple[int, str]] = []
        self.closed = False

    async def execute(
        self, run: Run, rule: Rule, event: Event, scope: dict[str, Any], journal: list[Step]
    ) -> None:
        self.executed.append((run.id, scope["payload"]["name"]))
        await self.services.outcomes.end(run, RunStatus.SUCCEEDED)

    def start(self) -> None:
        pass

    async def aclose(self) -> None:
        self.closed = True


async def routed_and_finished(tmp_path: Path, worker_of: Any) -> list[Run]:
    config = Config.model_validate({"store": f"sqlite:///{tmp_path / 'gateway.db'}"})
    store = Store(config.store_url)
    await store.open()
    try:
        worker: Worker = worker_of(store, config)
        done = asyncio.Event()
        worker.on_run_end.append(lambda _run, _status: done.set())
        await store.events.add(
            NewEvent(
                "shop", "shopify", "orders/create", "d1", {}, b'{"name": "#1"}', datetime.now(UTC)
            )
        )
        await worker.start()
        await asyncio.wait_for(done.wait(), 10)
        await worker.stop()
        return await store.runs.find()
    finally:
        await store.close()


async def test_the_worker_hands_a_run_to_the_executor_of_its_rules_kind(tmp_path: Path) -> None:
    made: list[Recorder] = []

    def recorder(services: RunServices) -> Recorder:
        made.append(Recorder(services))
        return made[-1]

    [run] = await routed_and_finished(
        tmp_path,
        lambda store, config: Worker(
            store, RuleSet([ASSISTANT]), config, executors={"assistant": recorder}
        ),
    )

    assert run.status == "succeeded"
    assert [executor.executed for executor in made] == [[(run.id, "#1")]]
    assert made[0].closed, "the worker closes its executors when it stops"


async def test_a_run_of_a_kind_with_no_executor_fails_saying_so(tmp_path: Path) -> None:
    [run] = await routed_and_finished(
        tmp_path, lambda store, config: Worker(store, RuleSet([ASSISTANT]), config)
    )

    assert run.status == "failed"
    assert run.error == "no assistant backend is configured"


async def test_replaced_rules_route_the_next_events(tmp_path: Path) -> None:
    def worker_of(store: Store, config: Config) -> Worker:
        worker = Worker(store, RuleSet([]), config, executors={"assistant": Recorder})
        worker.replace_rules(RuleSet([ASSISTANT]))
        return worker

    [run] = await routed_and_finished(tmp_path, worker_of)

    assert (run.rule, run.status) == ("ask", "succeeded")
