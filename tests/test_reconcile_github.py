"""GitHub reconciliation against a loopback GitHub speaking the hook-deliveries API: failed
deliveries are redelivered (or fetched and stored), each event acted on once, even across an
outage of the gateway, rate limits, and a crash in the middle of a run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.reconcile import github
from gateway.testing.downstream import counting_downstream
from gateway.testing.fake_github import FakeGitHub
from gateway.testing.server import serve_in_thread
from tests.live import live_gateway
from tests.reconciling import (
    GITHUB_SECRET,
    GITHUB_TOKEN,
    HANDLERS,
    RULES,
    Waits,
    run_once,
    stored_events,
    write_config,
)


@pytest.fixture
def fake() -> Iterator[tuple[FakeGitHub, str]]:
    server = FakeGitHub(GITHUB_SECRET, GITHUB_TOKEN)
    with serve_in_thread(server.app) as url:
        yield server, url


def source(api: str, **reconcile: Any) -> dict[str, Any]:
    block = {"every": "1h", "token": GITHUB_TOKEN, "repo": "acme/shop", "hook_id": 123,
             "api_base": api, **reconcile}  # fmt: skip
    return {"gh": {"provider": "github", "secret": GITHUB_SECRET, "reconcile": block}}


def plain() -> dict[str, Any]:
    return {"gh": {"provider": "github", "secret": GITHUB_SECRET}}


def push(n: int) -> dict[str, Any]:
    return {"ref": "refs/heads/main", "n": f"push-{n}", "after": f"{n:040d}"}


@pytest.mark.parametrize("mode", ["redeliver", "fetch"])
def test_events_github_failed_to_deliver_while_the_gateway_was_down_are_acted_on_once(
    tmp_path: Path, fake: tuple[FakeGitHub, str], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    github_api, api = fake
    monkeypatch.setattr(github, "PAGE_SIZE", 2)  # five deliveries: three pages, by cursor
    with counting_downstream() as (effects, url):
        rules = RULES.replace("URL", url)
        with live_gateway(tmp_path, rules, handlers=HANDLERS, sources=plain()) as gw:
            github_api.target = gw.url + "/hooks/gh"
            delivered = [github_api.send("push", push(n)) for n in range(2)]
            gw.finished_runs(2)
        # The gateway is stopped: GitHub's deliveries fail, and GitHub will not try again.
        failed = [github_api.send("push", push(n)) for n in range(2, 5)]
        assert [d["status_code"] for d in delivered + failed] == [202, 202, 502, 502, 502]
        github_api.fail_next(429, {"retry-after": "1"})
        github_api.fail_next(500)
        with live_gateway(tmp_path, rules, handlers=HANDLERS, sources=source(api, mode=mode)) as gw:
            github_api.target = gw.url + "/hooks/gh"
            # The scheduler's run at start-up finds what is missing.
            records = gw.wait_for(lambda: [r for r in gw.query(lambda s: s.reconciliations.recent())
                                           if r.status != "running"])  # fmt: skip
            if mode == "redeliver":
                assert len(github_api.redeliveries) == 3
                github_api.send_redeliveries()  # GitHub sends them through the signed path
            runs = gw.finished_runs(5)
            # A real redelivery of an event reconciliation fetched is still a duplicate.
            again = github_api.send_again(failed[0])
            assert again["status_code"] == 200
            events = gw.query(lambda s: s.events.find(source="gh"))
    assert records[0].status == "succeeded", records[0].error
    assert (records[0].found, records[0].missing) == (5, 3)
    assert (records[0].stored, records[0].redelivered) == ((3, 0) if mode == "fetch" else (0, 3))
    assert [r.status for r in runs] == ["succeeded"] * 5
    assert {event: len(keys) for event, keys in effects.keys_by_event.items()} == {
        f"push-{n}": 1 for n in range(5)
    }
    assert len(events) == 5
    via = sorted(e.received_via for e in events)
    assert via == (["reconcile"] * 3 + ["webhook"] * 2 if mode == "fetch" else ["webhook"] * 5)
    assert {e.delivery_id for e in events} == {d["guid"] for d in delivered + failed}


def test_rate_limits_are_waited_out_as_github_asks(
    tmp_path: Path, fake: tuple[FakeGitHub, str]
) -> None:
    github_api, api = fake
    config = write_config(tmp_path, source(api, mode="fetch"))
    github_api.send("push", push(1))  # no gateway: failed
    # A secondary rate limit (Retry-After), then the primary one (reset time), then a 500.
    github_api.fail_next(403, {"retry-after": "3"})
    reset = int(time.time()) + 7
    github_api.fail_next(429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    github_api.fail_next(500)
    waits = Waits()
    record = run_once(config, "gh", sleep=waits)
    assert record is not None and record.status == "succeeded", record
    assert waits.asked[0] == 3.0
    assert 5.0 <= waits.asked[1] <= 7.0
    assert 2.0 <= waits.asked[2] <= 4.0  # the third try: 1 s doubled twice, jittered
    assert record.stored == 1


def test_a_wait_longer_than_max_wait_fails_the_run_and_the_next_run_recovers(
    tmp_path: Path, fake: tuple[FakeGitHub, str]
) -> None:
    github_api, api = fake
    config = write_config(tmp_path, source(api, mode="fetch", max_wait=60))
    github_api.send("push", push(1))
    github_api.fail_next(429, {"retry-after": "61"})
    waits = Waits()
    failed = run_once(config, "gh", sleep=waits)
    assert failed is not None and failed.status == "failed"
    assert "asked to wait 61 s, over the 60 s limit" in (failed.error or "")
    assert waits.asked == []
    github_api.fail_next(429, {"retry-after": "60"})  # at the limit: waited
    recovered = run_once(config, "gh", sleep=waits)
    assert recovered is not None and recovered.status == "succeeded"
    assert waits.asked == [60.0]
    assert failed.cursor is None  # a failed run moves no cursor: the next starts as it did
    assert [e.received_via for e in stored_events(config, "gh")] == ["reconcile"]


def test_a_crash_in_the_middle_of_a_run_resumes_without_duplicates(
    tmp_path: Path, fake: tuple[FakeGitHub, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    github_api, api = fake
    config = write_config(tmp_path, source(api, mode="fetch"))
    sent = [github_api.send("push", push(n)) for n in range(6)]
    original = github.GitHubReconciler.keep
    kept = []

    async def crash_after_three(self: Any, *args: Any) -> bool:
        if len(kept) == 3:
            raise RuntimeError("killed mid-run")
        kept.append(args)
        return await original(self, *args)

    monkeypatch.setattr(github.GitHubReconciler, "keep", crash_after_three)
    crashed = run_once(config, "gh")
    assert crashed is not None and crashed.status == "failed"
    assert crashed.stored == 3 and "killed mid-run" in (crashed.error or "")
    monkeypatch.setattr(github.GitHubReconciler, "keep", original)
    resumed = run_once(config, "gh")
    assert resumed is not None and resumed.status == "succeeded"
    assert (resumed.missing, resumed.stored) == (3, 3)
    events = stored_events(config, "gh")
    assert sorted(e.delivery_id for e in events) == sorted(d["guid"] for d in sent)


def test_a_second_run_asks_nothing_again_and_continues_from_the_last_success(
    tmp_path: Path, fake: tuple[FakeGitHub, str]
) -> None:
    github_api, api = fake
    config = write_config(tmp_path, source(api, mode="fetch"))
    github_api.send("push", push(1))
    first = run_once(config, "gh")
    github_api.send("push", push(2))
    second = run_once(config, "gh")
    assert first is not None and second is not None
    assert (first.stored, second.stored) == (1, 1)
    assert second.since is not None and first.cursor is not None
    assert second.since.isoformat() < first.cursor  # from the last success, less the overlap
    assert len(stored_events(config, "gh")) == 2


def test_one_run_per_period_across_replicas(tmp_path: Path, fake: tuple[FakeGitHub, str]) -> None:
    _, api = fake
    config = write_config(tmp_path, source(api))
    first = run_once(config, "gh", period="every 3600s #1")
    second = run_once(config, "gh", period="every 3600s #1")
    assert first is not None and first.status == "succeeded"
    assert second is None


def test_a_slow_reconciliation_never_holds_up_ingest_and_is_interrupted_at_stop(
    tmp_path: Path, fake: tuple[FakeGitHub, str]
) -> None:
    github_api, api = fake
    github_api.fail_next(429, {"retry-after": "30"})  # the run waits 30 s at its first call
    with live_gateway(tmp_path, "[]", sources=source(api, mode="fetch")) as gw:
        github_api.target = gw.url + "/hooks/gh"
        gw.wait_for(lambda: github_api.requests)
        delivered = github_api.send("push", push(1))  # stored while the run waits
        running = gw.query(lambda s: s.reconciliations.recent("gh"))
    assert delivered["status_code"] == 202
    assert [r.status for r in running] == ["running"]
    later = run_once(write_config(tmp_path, source(api, mode="fetch")), "gh")
    assert later is not None and later.status == "succeeded"
    assert [r.status for r in _runs(tmp_path, api)] == ["succeeded", "interrupted"]


def test_the_scheduler_reconciles_once_each_period(
    tmp_path: Path, fake: tuple[FakeGitHub, str]
) -> None:
    _, api = fake
    with live_gateway(tmp_path, "[]", sources=source(api, every="1s")) as gw:
        runs = gw.wait_for(lambda: [r for r in gw.query(lambda s: s.reconciliations.recent("gh"))
                                    if r.status == "succeeded"][2:])  # fmt: skip
        every = gw.query(lambda s: s.reconciliations.recent("gh", 100))
    periods = [r.period for r in every]
    assert len(periods) == len(set(periods))  # one run per period
    assert all(r.period.startswith("every 1s #") for r in runs)


def _runs(tmp_path: Path, api: str) -> list[Any]:
    import asyncio

    from gateway.store import Store

    config = write_config(tmp_path, source(api, mode="fetch"))

    async def go() -> list[Any]:
        store = Store(config.store_url)
        await store.open()
        try:
            return await store.reconciliations.recent("gh")
        finally:
            await store.close()

    return asyncio.run(go())


def test_failed_only_false_also_recovers_deliveries_another_receiver_answered(
    tmp_path: Path, fake: tuple[FakeGitHub, str]
) -> None:
    github_api, api = fake
    with counting_downstream() as (_, url):
        github_api.target = url + "/effect"  # answered 200, but not by this gateway
        github_api.send("push", push(1))
    only_failed = run_once(write_config(tmp_path, source(api, mode="fetch")), "gh")
    every = run_once(write_config(tmp_path, source(api, mode="fetch", failed_only=False)), "gh")
    assert only_failed is not None and every is not None
    assert (only_failed.found, only_failed.missing, every.missing, every.stored) == (1, 0, 1, 1)


@pytest.mark.parametrize(
    ("owner", "path"),
    [
        ({"repo": "acme/shop", "hook_id": 5}, "/repos/acme/shop/hooks/5"),
        ({"org": "acme", "hook_id": 6}, "/orgs/acme/hooks/6"),
        ({"app": True}, "/app/hook"),
    ],
)
def test_repository_organisation_and_app_hooks_are_found_where_github_keeps_them(
    owner: dict[str, Any], path: str
) -> None:
    from gateway.reconcile_config import GitHubReconcile

    assert GitHubReconcile(every=60, token="t", **owner).hook_path == path


def test_a_call_unanswered_within_the_call_timeout_is_tried_again(
    tmp_path: Path, fake: tuple[FakeGitHub, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    github_api, api = fake
    monkeypatch.setattr(github, "CALL_TIMEOUT", 0.5)
    github_api.send("push", push(1))
    github_api.slow_next(0.4)  # within the limit: answered
    github_api.slow_next(1.0)  # over it: given up on, tried again
    waits = Waits()
    record = run_once(write_config(tmp_path, source(api, mode="fetch")), "gh", sleep=waits)
    assert record is not None and record.status == "succeeded", record
    assert len(waits.asked) == 1 and record.stored == 1
    assert [method for method, _ in github_api.requests] == ["GET", "GET", "GET"]


def test_a_delivery_the_gateway_keeps_refusing_is_redelivered_at_most_three_times(
    tmp_path: Path, fake: tuple[FakeGitHub, str]
) -> None:
    github_api, api = fake
    config = write_config(tmp_path, source(api))
    github_api.send("push", push(1))  # no gateway: failed, and every redelivery fails too
    asked = []
    for _ in range(github.MAX_REDELIVERIES + 1):
        record = run_once(config, "gh")
        assert record is not None and record.status == "succeeded"
        asked.append(record.redelivered)
        github_api.send_redeliveries()
    assert asked == [1, 1, 1, 0]


def test_a_redelivery_racing_a_fetch_reconciliation_is_stored_once(
    tmp_path: Path, fake: tuple[FakeGitHub, str]
) -> None:
    from gateway.app import create_app

    github_api, api = fake
    config = write_config(tmp_path, source(api, mode="fetch"))
    failed = [github_api.send("push", push(n)) for n in range(3)]  # no gateway yet
    with serve_in_thread(create_app(config, roles=frozenset({"ingest"}))) as url:
        github_api.target = url + "/hooks/gh"
        # Someone redelivers the first from GitHub's settings while the run lists deliveries.
        github_api.during_list = lambda: github_api.send_again(failed[0])
        record = run_once(config, "gh")
    assert record is not None and record.status == "succeeded", record
    assert (record.found, record.missing, record.stored) == (3, 2, 2)
    events = {e.delivery_id: e.received_via for e in stored_events(config, "gh")}
    assert events == {failed[0]["guid"]: "webhook", failed[1]["guid"]: "reconcile",
                      failed[2]["guid"]: "reconcile"}  # fmt: skip


# A body as GitHub may format it: spaces after separators, non-ASCII and slashes escaped, a
# decimal written out. Parsing and serialising it again gives other bytes.
FORMATTED_PUSH = (
    b'{"ref": "refs/heads/main", "n": "push-caf\\u00e9",\n'
    b' "compare": "https:\\/\\/github.com\\/acme\\/shop", "size": 1.50}'
)


def test_a_fetched_delivery_is_stored_as_the_bytes_github_sent(
    tmp_path: Path, fake: tuple[FakeGitHub, str]
) -> None:
    from gateway.app import create_app

    github_api, api = fake
    config = write_config(tmp_path, source(api, mode="fetch"))
    failed = github_api.send_body("push", FORMATTED_PUSH)  # no gateway yet
    record = run_once(config, "gh")
    assert record is not None and (record.status, record.stored) == ("succeeded", 1), record

    [event] = stored_events(config, "gh")
    assert event.body == FORMATTED_PUSH
    # The same bytes under the same delivery: GitHub's own redelivery later is a duplicate.
    with serve_in_thread(create_app(config, roles=frozenset({"ingest"}))) as url:
        github_api.target = url + "/hooks/gh"
        assert github_api.send_again(failed)["status_code"] == 200
    assert [e.received_via for e in stored_events(config, "gh")] == ["reconcile"]
