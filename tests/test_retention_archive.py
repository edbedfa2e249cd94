"""Archive before delete: pruned events and runs written as gzip JSON Lines to a directory or
an S3 bucket (the real boto3 against moto's server on loopback), restored, and replayed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway import config as config_module
from gateway.cli import app as cli
from gateway.config import Config
from gateway.operations import IllegalState, replay
from gateway.retention.archive import Archive, DirectoryArchive, S3Archive, decode
from gateway.retention.prune import Pruner
from gateway.retention.restore import restore
from gateway.retention_config import RetentionConfig
from gateway.ruleset import load_ruleset
from gateway.store import EventStatus, NewEvent, NewRun, RunStatus, Store

NOW = datetime.now(UTC)
LATER = NOW + timedelta(days=100)
RULES = """\
- name: record-order
  on: {source: shop, event: orders/create}
  when: "{{ payload.total > 100 }}"
  actions:
    - test.record: {label: "order {{ payload.id }}"}
"""


@pytest.fixture
def config(write_config: Callable[..., Path], tmp_path: Path) -> Config:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "orders.yaml").write_text(RULES)
    return config_module.load(write_config(retention={"archive": "archive"}), environ={})


@pytest.fixture
async def store(config: Config) -> AsyncIterator[Store]:
    store = Store(config.store_url)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on a loopback port, with a bucket `archive`; its endpoint URL."""
    import boto3  # type: ignore[import-untyped]
    from moto.server import ThreadedMotoServer  # type: ignore[import-untyped]

    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="archive")
    yield endpoint
    server.stop()


async def finished_order(store: Store, number: int, total: int) -> int:
    body = f'{{"id": {number}, "total": {total}}}'.encode()
    new = NewEvent("shop", "shopify", "orders/create", f"o{number}", {"x-topic": "orders"},
                   body, NOW, dedup_key=f"digest-{number}")  # fmt: skip
    event_id = (await store.events.add(new)).id
    runs = [NewRun(event_id=event_id, rule="record-order", kind="actions")]
    [run_id] = await store.runs.route(event_id, runs, EventStatus.ROUTED)
    step = {"kind": "tool", "tool": "test.record", "idempotency_key": f"k{run_id}",
            "status": "succeeded", "started_at": NOW, "arguments": {"label": "x"}}  # fmt: skip
    await store.steps.record(run_id, [(0, step)], RunStatus.SUCCEEDED)
    return event_id


async def prune_into(store: Store, archive: Archive) -> None:
    settings = RetentionConfig(pause=0, batch=2)
    pruned = await Pruner(store, settings, archive=archive).prune(LATER)
    assert pruned is not None and pruned.archived == 6  # 3 events, 3 runs


@pytest.mark.usefixtures("recording")
async def test_pruned_events_are_archived_restored_and_replayed(
    store: Store, config: Config, tmp_path: Path
) -> None:
    ids = [await finished_order(store, n, 500) for n in range(3)]
    archive = DirectoryArchive(tmp_path / "archive")
    await prune_into(store, archive)
    assert [await store.events.get(i) for i in ids] == [None, None, None]
    names = await archive.names("events")
    assert len(names) == 2 and names[0].startswith(f"events/{NOW.date().isoformat()}/")
    assert decode((tmp_path / "archive" / names[0]).read_bytes())[0]["id"] == ids[0]

    done = await restore(store, archive, NOW - timedelta(hours=1), NOW + timedelta(hours=1))

    assert (done.events, done.runs, done.steps) == (3, 3, 3)
    event = await store.events.get(ids[1])
    assert event is not None and event.body == b'{"id": 1, "total": 500}'
    assert event.headers == {"x-topic": "orders"}
    assert [r.status for r in await store.runs.find(event_id=ids[1])] == ["succeeded"]
    replayed = await replay(store, load_ruleset(config), ids[1])
    assert len(replayed.run_ids) == 1  # the rule's condition read the restored payload


@pytest.mark.usefixtures("recording")
async def test_a_body_pruned_event_is_replayed_only_once_restored(
    store: Store, config: Config, tmp_path: Path
) -> None:
    body = b'{"id": 9, "total": 900}'
    new = NewEvent("shop", "shopify", "orders/create", "d", {}, body, NOW)
    event_id = (await store.events.add(new)).id
    await store.events.set_status(event_id, EventStatus.UNMATCHED)
    archive = DirectoryArchive(tmp_path / "archive")
    settings = RetentionConfig(pause=0, bodies="1d", runs="30d")  # type: ignore[arg-type]
    await Pruner(store, settings, archive=archive).prune(NOW + timedelta(days=2))
    pruned = await store.events.get(event_id)
    assert pruned is not None and pruned.pruned and pruned.body == b""
    with pytest.raises(IllegalState, match="archive restore"):
        await replay(store, load_ruleset(config), event_id)

    done = await restore(store, archive, NOW - timedelta(days=1), NOW + timedelta(days=1))

    back = await store.events.get(event_id)
    assert done.events == 1 and back is not None and back.body == body and not back.pruned
    assert len((await replay(store, load_ruleset(config), event_id)).run_ids) == 1


async def test_restore_leaves_out_what_is_outside_the_range(store: Store, tmp_path: Path) -> None:
    await finished_order(store, 1, 500)
    archive = DirectoryArchive(tmp_path / "archive")
    await Pruner(store, RetentionConfig(pause=0), archive=archive).prune(LATER)

    done = await restore(store, archive, NOW + timedelta(hours=1), NOW + timedelta(days=1))

    assert (done.events, done.runs) == (0, 0)


async def test_an_s3_archive_is_written_and_restored_with_boto3(store: Store, s3: str) -> None:
    ids = [await finished_order(store, n, 500) for n in range(3)]
    archive = S3Archive("archive", "gateway/", endpoint=s3)
    await prune_into(store, archive)
    import boto3

    listed = boto3.client("s3", endpoint_url=s3).list_objects_v2(Bucket="archive")
    keys = [o["Key"] for o in listed["Contents"]]
    assert len(keys) == 4 and all(k.startswith("gateway/") for k in keys)

    done = await restore(store, archive, NOW - timedelta(hours=1), NOW + timedelta(hours=1))

    assert (done.events, done.runs) == (3, 3)
    event = await store.events.get(ids[2])
    assert event is not None and event.body == b'{"id": 2, "total": 500}'


def test_gateway_retention_prune_and_archive_restore_round_trip(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    short = {"archive": "archive", "bodies": "1s", "runs": "1s", "dedup_keys": "1s", "rest": 0}
    path = str(write_config(retention=short))
    config = config_module.load(path, environ={})

    async def seed() -> int:
        store = Store(config.store_url)
        await store.open()
        try:
            return await finished_order(store, 7, 500)
        finally:
            await store.close()

    event_id = asyncio.run(seed())
    time.sleep(1.1)  # older than every retention of this config
    runner = CliRunner()

    pruned = runner.invoke(cli, ["retention", "prune", "-c", path])

    assert pruned.exit_code == 0, pruned.output
    assert json.loads(pruned.output.splitlines()[-1]) | {"pages": 0} == {
        "bodies": 1, "runs": 1, "event_rows": 1, "threads": 0, "pages": 0, "archived": 2
    }  # fmt: skip
    since, until = (NOW - timedelta(hours=1)).isoformat(), (NOW + timedelta(hours=1)).isoformat()
    restored = runner.invoke(cli, ["archive", "restore", "--since", since, "--until", until,
                                   "-c", path])  # fmt: skip
    assert restored.exit_code == 0, restored.output
    assert json.loads(restored.output.splitlines()[-1]) == {"events": 1, "runs": 1, "steps": 1}

    async def read() -> bytes | None:
        store = Store(config.store_url)
        await store.open()
        try:
            event = await store.events.get(event_id)
            return event.body if event else None
        finally:
            await store.close()

    assert asyncio.run(read()) == b'{"id": 7, "total": 500}'
