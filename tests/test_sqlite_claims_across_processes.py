"""Worker processes on one SQLite file (`gateway serve --processes N`) claim runs side by side:
each claim is one IMMEDIATE write transaction, so two processes never take the same run; and
only the first to start takes over the runs left running."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.rules.loader import RuleSet
from gateway.store import NewRun, Store
from gateway.worker import Worker
from tests.process import wait_until
from tests.test_store import new_event

pytestmark = pytest.mark.slow

RUNS = 600
# Says it is ready (the file `<go>.<owner>`), waits for the file `go` (so that both processes
# claim at the same time), claims three runs at a time until none is left, prints their ids.
# After its first claim it waits (up to 30 s) for the other's first: on a loaded machine one
# process, descheduled, could otherwise start after the other had claimed everything.
CLAIMER = """
import asyncio, json, os, sys, time
from gateway.store import Store

async def main(url: str, owner: str, other: str, go: str) -> None:
    store = Store(url)
    await store.open(migrate=False)
    open(f"{go}.{owner}", "w").close()
    while not os.path.exists(go):
        time.sleep(0.001)
    taken: list[int] = [run.id for run in await store.runs.claim(owner, 3, 60)]
    open(f"{go}.{owner}.claimed", "w").close()
    deadline = time.monotonic() + 30
    while not os.path.exists(f"{go}.{other}.claimed") and time.monotonic() < deadline:
        time.sleep(0.001)
    while runs := await store.runs.claim(owner, 3, 60):
        taken += [run.id for run in runs]
    await store.close()
    print(json.dumps(taken))

asyncio.run(main(*sys.argv[1:]))
"""


async def test_two_processes_claiming_at_once_never_take_the_same_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    store = Store(url)
    await store.open()
    created = []
    for n in range(RUNS // 20):
        stored = await store.events.add(new_event(f"claims-{n}"))
        plan = [NewRun(event_id=stored.id, rule="r", kind="actions")] * 20
        created += await store.runs.route(stored.id, plan, "routed")
    await store.close()
    go = tmp_path / "go"
    claimers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, url, f"w{n}", f"w{1 - n}", str(go)],
            stdout=subprocess.PIPE,
        )
        for n in range(2)
    ]
    wait_until(lambda: all(Path(f"{go}.w{n}").exists() for n in range(2)), timeout=60)
    go.touch()
    taken = [json.loads(claimer.communicate(timeout=120)[0]) for claimer in claimers]

    assert all(claimer.returncode == 0 for claimer in claimers)
    assert all(taken), "a process claimed nothing"
    assert sorted(taken[0] + taken[1]) == sorted(created)  # each run once, none left


def leases(database: Path) -> list[tuple[str | None, str]]:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT lease_owner, status FROM runs ORDER BY id").fetchall()


@pytest.mark.parametrize("resume", [True, False])
async def test_only_the_first_worker_process_takes_over_the_runs_left_running(
    tmp_path: Path, resume: bool
) -> None:
    """The first worker process starts alone and resumes what was running (its owner died);
    a sibling starting after it must leave the runs it took where they are."""
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    store = Store(url)
    await store.open()
    stored = await store.events.add(new_event("resume"))
    plan = [NewRun(event_id=stored.id, rule="gone", kind="actions")] * 3
    await store.runs.route(stored.id, plan, "routed")
    await store.runs.claim("first", 3, 60)
    config = Config.model_validate({"store": url})
    sibling = Worker(store, RuleSet([]), config)
    await sibling.start(resume=resume)
    try:
        await asyncio.sleep(0.5)
        held = leases(tmp_path / "gateway.db")
    finally:
        await sibling.stop()
        await store.close()
    if resume:  # the first process: what was running is its now
        assert all(owner != "first" for owner, _ in held), held
    else:
        assert held == [("first", "running")] * 3
