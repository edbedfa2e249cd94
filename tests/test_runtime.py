"""The `Gateway` runtime: the parts a role needs, started and stopped together."""

from __future__ import annotations

import pytest

from gateway.config import Config
from gateway.errors import ConfigError, SchemaMismatch
from gateway.runtime import ROLES, Gateway
from gateway.store import database


async def test_the_ingest_role_starts_no_worker_and_no_scheduler(config: Config) -> None:
    gateway = Gateway(config)
    await gateway.start(frozenset({"ingest"}))
    try:
        assert (gateway.worker, gateway.scheduler) == (None, None)
        assert await gateway.store.ping()
    finally:
        await gateway.stop()


async def test_every_role_starts_a_worker_and_a_scheduler(config: Config) -> None:
    gateway = Gateway(config)
    await gateway.start(ROLES)
    try:
        assert gateway.worker is not None and gateway.scheduler is not None
    finally:
        await gateway.stop()


async def test_a_restart_keeps_its_roles(config: Config) -> None:
    gateway = Gateway(config)
    await gateway.start(frozenset({"ingest"}))
    await gateway.stop()

    with pytest.raises(ValueError, match="roles"):
        await gateway.start(ROLES)


async def test_an_unknown_role_is_refused(config: Config) -> None:
    with pytest.raises(ValueError, match="unknown role"):
        await Gateway(config).start(frozenset({"ingest", "cook"}))


async def test_a_start_that_fails_lets_the_next_worker_take_the_store(config: Config) -> None:
    """A store that does not open (here: an older schema, not migrated) releases the worker
    lock: another gateway on the same SQLite file may start its worker."""
    engine, _ = database.connect(config.store_url)
    try:
        await database.upgrade(engine, "0005")
    finally:
        await engine.dispose()

    with pytest.raises(SchemaMismatch):
        await Gateway(config).start(ROLES, migrate=False)

    second = Gateway(config)
    await second.start(ROLES)
    await second.stop()


async def test_a_refused_reload_keeps_every_part_s_rules(config: Config) -> None:
    gateway = Gateway(config)
    await gateway.start(ROLES)
    try:
        before = gateway.rules
        (config.rules_dir / "broken.yaml").write_text("- name: broken\n  on: {}\n")

        with pytest.raises(ConfigError):
            await gateway.reload_rules()

        assert gateway.rules is before
        assert gateway.worker is not None and gateway.worker.rules is before
    finally:
        await gateway.stop()


async def test_a_reload_swaps_the_rules_of_every_part(config: Config) -> None:
    gateway = Gateway(config)
    await gateway.start(ROLES)
    try:
        (config.rules_dir / "extra.yaml").write_text(
            "- name: extra\n  on: {source: ci}\n  actions:\n    - log.record: {message: x}\n"
        )

        rules = await gateway.reload_rules()

        assert gateway.rules is rules and set(rules.by_name) == {"extra"}
        assert gateway.worker is not None and gateway.worker.rules is rules
    finally:
        await gateway.stop()
