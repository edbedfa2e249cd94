#!/usr/bin/env python3
"""Reconciliation: what recovering deliveries a provider failed to make costs the gateway.

  fetch      --events (1,000) GitHub deliveries that failed while the gateway was down, on a
             loopback GitHub speaking the hook-deliveries API (uvicorn in a thread); one
             `reconcile` run in `mode: fetch` lists them page by page, looks their guids up in
             the store, reads each one and stores it (signature checked, deduplicated), on a
             fresh SQLite store.
  redeliver  the same run in `mode: redeliver`: the list, the lookup, one `POST .../attempts`
             per missing delivery (GitHub then sends them through the signed path; that part
             is ingest, measured by bench/ingest, and not here).
  baseline   the same API calls made directly with an httpx2 client, one after the other as
             the reconciler makes them (list pages, then one call per failed delivery), with
             no store: the floor set by the API itself on this machine; measured before and
             after each run, the faster of the two counts.

Each ratio (run / baseline, in time) is what the gateway adds to the API calls, measured in
the same run; reported, not enforced. On GitHub itself the limit is its rate limit (5,000
calls an hour for a token), far below these rates: see docs/reconcile.md.

Usage:  bench/reconcile [--events 1000] [--json FILE]
        (re-executes itself under the repo's .venv python)
"""

from __future__ import annotations

import asyncio
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Arguments, ensure_venv, write_json

SECRET, TOKEN = "gh-bench-secret", "ghp_bench_token"
HOOK = "/repos/acme/shop/hooks/123"


ensure_venv(__file__)

import httpx2  # noqa: E402

from gateway import log as gateway_log  # noqa: E402
from gateway.config import Config  # noqa: E402
from gateway.reconcile import github, reconcile  # noqa: E402
from gateway.store import Store  # noqa: E402
from gateway.testing.fake_github import FakeGitHub  # noqa: E402
from gateway.testing.server import serve_in_thread  # noqa: E402


def failed_deliveries(count: int) -> FakeGitHub:
    """A loopback GitHub whose hook failed `count` deliveries (the gateway was down)."""
    fake = FakeGitHub(SECRET, TOKEN, HOOK)
    fake.down = True
    for n in range(count):
        fake.send("push", {"ref": "refs/heads/main", "n": f"push-{n}", "after": f"{n:040d}"})
    return fake


async def one_run(workdir: Path, api: str, mode: str, count: int) -> float:
    """Seconds of one `reconcile` run on a fresh store; checks what it did."""
    block = {"every": "1h", "token": TOKEN, "repo": "acme/shop", "hook_id": 123}
    block |= {"api_base": api, "mode": mode, "lookback": 7200}
    config = Config.model_validate(
        {
            "store": f"sqlite:///{workdir / 'gateway.db'}",
            "rules": str(workdir),
            "sources": {"gh": {"provider": "github", "secret": SECRET, "reconcile": block}},
            "base_dir": workdir,
        }
    )
    store = Store(config.store_url)
    await store.open()
    try:
        started = time.perf_counter()
        record = await reconcile(store, config, "gh")
        seconds = time.perf_counter() - started
    finally:
        await store.close()
    done = (record.stored if mode == "fetch" else record.redelivered) if record else 0
    if record is None or record.error or done != count:
        raise RuntimeError(f"{mode}: the run did not recover every delivery: {record}")
    return seconds


async def baseline(api: str, fake: FakeGitHub, mode: str) -> float:
    """The same calls, straight: every list page, then one call per failed delivery."""
    headers = {"authorization": f"Bearer {TOKEN}", "accept": "application/vnd.github+json"}
    started = time.perf_counter()
    async with httpx2.AsyncClient(base_url=api + HOOK, headers=headers, timeout=30) as client:
        url: str | None = f"/deliveries?per_page={github.PAGE_SIZE}"
        ids = []
        while url is not None:
            response = await client.get(url)
            ids += [d["id"] for d in response.json() if d["status_code"] >= 300]
            url = response.links.get("next", {}).get("url")
        for delivery_id in reversed(ids):
            if mode == "fetch":
                (await client.get(f"/deliveries/{delivery_id}")).raise_for_status()
            else:
                (await client.post(f"/deliveries/{delivery_id}/attempts")).raise_for_status()
    seconds = time.perf_counter() - started
    fake.redeliveries.clear()
    return seconds


def main(argv: list[str]) -> int:
    parser = Arguments(__doc__, quick={"events": 100})
    parser.add_argument("--events", type=int, default=1000, help="failed deliveries (<= 3000)")
    args = parser.parse(argv)
    if not 0 < args.events <= 3000:  # the loopback GitHub dates them a second apart, from 1 h ago
        parser.error("--events: between 1 and 3000")
    gateway_log.configure("warning")
    results: dict[str, Any] = {"events": args.events, "machine": platform.platform()}
    fake = failed_deliveries(args.events)
    with serve_in_thread(fake.app) as api:
        for mode in ("fetch", "redeliver"):
            before = asyncio.run(baseline(api, fake, mode))
            workdir = Path(tempfile.mkdtemp(prefix=f"bench-reconcile-{mode}-"))
            try:
                seconds = asyncio.run(one_run(workdir, api, mode, args.events))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            fake.redeliveries.clear()
            # The floor is measured on both sides of the run; the faster one counts.
            floor = min(before, asyncio.run(baseline(api, fake, mode)))
            ratio = seconds / floor
            results[mode] = {
                "seconds": round(seconds, 3),
                "per_s": round(args.events / seconds),
                "baseline_seconds": round(floor, 3),
                "ratio": round(ratio, 2),
            }
            print(
                f"{mode:9} {args.events} deliveries in {seconds:.2f} s "
                f"({args.events / seconds:.0f}/s); the API calls alone {floor:.2f} s: {ratio:.2f}x"
            )
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
