"""What the reconciliation tests share: loopback GitHub and Stripe, a counting downstream, a
rule that acts once per event, and running `reconcile` with its waits recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway import config as config_module
from gateway.config import Config
from gateway.reconcile import reconcile
from gateway.store import Event, Reconciliation, Store

GITHUB_SECRET = "gh-webhook-secret"
GITHUB_TOKEN = "ghp_loopback_token"
STRIPE_SECRET = "whsec_loopback"
STRIPE_KEY = "sk_test_loopback"

# One effect per event, named by the event so a second run of it would show.
RULES = """
- name: act-on-push
  on: {source: gh, event: push}
  actions:
    - http.request: {method: POST, url: "URL/effect", json: {event: "{{ payload.n }}"}}
- name: act-on-invoice
  on: {source: pay, event: invoice.paid}
  actions:
    - http.request: {method: POST, url: "URL/effect", json: {event: "{{ payload.data.object.id }}"}}
"""
HANDLERS = {"http": {"allow_hosts": ["127.0.0.1"]}}


def write_config(tmp_path: Path, sources: dict[str, Any], store: str | None = None) -> Config:
    import yaml

    (tmp_path / "rules").mkdir(exist_ok=True)
    path = tmp_path / "gateway.yaml"
    document = {
        "store": store or f"sqlite:///{tmp_path / 'gateway.db'}",
        "sources": sources,
        "rules": str(tmp_path / "rules"),
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return config_module.load(path, environ={})


class Waits:
    """A `sleep` that records each wait asked for and returns at once."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)


def run_once(config: Config, source: str, **options: Any) -> Reconciliation | None:
    """`reconcile` on a store of its own, as a replica's scheduler would call it."""

    async def go() -> Reconciliation | None:
        store = Store(config.store_url)
        await store.open()
        try:
            return await reconcile(store, config, source, **options)
        finally:
            await store.close()

    return asyncio.run(go())


def stored_events(config: Config, source: str) -> list[Event]:
    async def go() -> list[Event]:
        store = Store(config.store_url)
        await store.open()
        try:
            return list(reversed(await store.events.find(source=source, limit=10_000)))
        finally:
            await store.close()

    return asyncio.run(go())
