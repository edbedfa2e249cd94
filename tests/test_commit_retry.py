"""A database blip when a call's result is committed does not make the call again: the
commit is retried (bounded) before the run is given up to a retry or a takeover."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.runs.persist import persist
from gateway.testing.downstream import CountingDownstream
from tests.live import live_gateway

RULE = """
- name: notify
  on: {source: shop, event: orders/create}
  actions:
    - http.request: {method: POST, url: "URL/effect", json: {order: "{{ payload.name }}"}}
"""


async def no_sleep(seconds: float) -> None:
    pass


async def test_a_write_that_fails_a_few_times_is_tried_until_it_passes() -> None:
    tries: list[int] = []

    async def write() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("database blip")
        return "committed"

    assert await persist(write, delays=(0.1, 0.1, 0.1), sleep=no_sleep) == "committed"
    assert len(tries) == 3


async def test_a_write_that_keeps_failing_raises_after_its_bounded_tries() -> None:
    tries: list[int] = []

    async def write() -> None:
        tries.append(1)
        raise ConnectionError("database down")

    with pytest.raises(ConnectionError, match="database down"):
        await persist(write, delays=(0.1, 0.1), sleep=no_sleep)
    assert len(tries) == 3


def test_a_result_commit_failing_once_after_the_call_does_not_repeat_the_call(
    tmp_path: Path, downstream: tuple[CountingDownstream, str]
) -> None:
    server, url = downstream
    handlers = {"http": {"allow_hosts": ["127.0.0.1"]}}
    with live_gateway(tmp_path, RULE.replace("URL", url), handlers=handlers) as gw:  # type: ignore[arg-type]
        steps = gw.app.state.gateway.store.steps
        real_finish = steps.finish
        blips: list[int] = []

        async def finish_with_a_blip(run_id: int, position: int, values: Any, *a: Any, **k: Any):  # type: ignore[no-untyped-def]
            if values.get("status") == "succeeded" and not blips:
                blips.append(run_id)  # the database goes away once, right after the call
                raise ConnectionError("server closed the connection unexpectedly")
            return await real_finish(run_id, position, values, *a, **k)

        steps.finish = finish_with_a_blip
        gw.post_order("e1", name="#1")
        [run] = gw.finished_runs(1)

    assert blips == [run.id]
    assert (run.status, run.attempt) == ("succeeded", 1)
    assert list(server.attempts.values()) == [1]
