"""Issue 13, item 4: dedup and routing rest on what was signed, never on unsigned headers.

A captured delivery replayed under a new delivery-id header is a duplicate; a replay cannot
claim a future delivery's id; each provider dedups on the id it verified, or on the body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

import gateway.ingest.providers  # noqa: F401  (fills the registry)
from gateway import config as config_module
from gateway.config import Config, SourceConfig
from gateway.ingest.provider import PROVIDERS, Provider, body_digest
from gateway.store import NewEvent, Store, database
from tests.conftest import Gateway
from tests.fixtures import SIGNED_AT, TEST_SOURCES, Fixture, deliverable, load, requires_fixtures
from tests.test_ingest import stored_events

pytestmark = requires_fixtures

# Sources beside the shared test sources: GitLab's signed webhooks, and a generic HMAC sender.
SIGNING_TOKEN = "whsec_dGhpc19pc19hX3Rlc3Rfa2V5"
EXTRA_SOURCES: dict[str, dict[str, object]] = {
    "gitlab-signed": {"provider": "gitlab", "signing_token": SIGNING_TOKEN},
    "billing": {"provider": "generic", "secret": "billing-secret", "event_type_field": "kind"},
}
# Providers that sign only the body, with the unsigned header carrying their delivery id.
BODY_ONLY = [
    ("github", "push.branch", "X-GitHub-Delivery"),
    ("shopify", "orders_create", "X-Shopify-Event-Id"),
    ("woocommerce", "order.created", "X-WC-Webhook-Delivery-ID"),
    ("gitlab", "pipeline_hook", "Idempotency-Key"),
]


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Config:
    return config_module.load(write_config(sources={**TEST_SOURCES, **EXTRA_SOURCES}), environ={})


def signer(source: str) -> Provider:
    settings = SourceConfig.model_validate({**TEST_SOURCES, **EXTRA_SOURCES}[source])
    return PROVIDERS[settings.provider](settings)


def metric(gateway: Gateway, line: str) -> float:
    """The value of one sample of /metrics (0 when absent)."""
    for row in gateway.client.get("/metrics").text.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize(("folder", "event", "header"), BODY_ONLY, ids=lambda v: str(v))
def test_replayed_body_with_new_delivery_id_is_not_stored_again(
    gateway: Gateway, folder: str, event: str, header: str
) -> None:
    fixture = load(folder, event)
    first = gateway.deliver(fixture)

    replay = gateway.post(fixture.source, fixture.body, {**fixture.headers, header: "replay-1"})

    assert first.status_code == 202
    assert replay.status_code == 200
    assert replay.json() == {"id": first.json()["id"], "duplicate": True}
    assert gateway.count() == 1


def test_shopify_topics_sent_with_one_body_are_distinct_events(gateway: Gateway) -> None:
    # Shopify sends the same order under orders/create, orders/paid, ... (its test
    # notifications always do, byte for byte): a body-only key would drop the later topics.
    created, paid = load("shopify", "orders_create"), load("shopify", "orders_paid")
    assert created.body == paid.body

    statuses = [gateway.deliver(created).status_code, gateway.deliver(paid).status_code]

    assert statuses == [202, 202]
    assert sorted(e["type"] for e in stored_events(gateway)) == ["orders/create", "orders/paid"]


def test_replay_is_counted_as_replayed_not_as_a_redelivery(gateway: Gateway) -> None:
    fixture = load("github", "push.branch")
    gateway.deliver(fixture)

    gateway.post("ci", fixture.body, {**fixture.headers, "X-GitHub-Delivery": "replay-1"})

    assert metric(gateway, 'gateway_webhook_replays_total{source="ci"}') == 1.0
    assert metric(gateway, 'gateway_webhook_duplicates_total{source="ci"}') == 0.0


def test_redelivery_is_counted_as_duplicate_not_as_replayed(gateway: Gateway) -> None:
    fixture = load("github", "push.branch")
    gateway.deliver(fixture)

    gateway.deliver(fixture)

    assert metric(gateway, 'gateway_webhook_duplicates_total{source="ci"}') == 1.0
    assert metric(gateway, 'gateway_webhook_replays_total{source="ci"}') == 0.0


def test_replay_is_logged_as_a_warning_with_both_delivery_ids(gateway: Gateway) -> None:
    fixture = load("shopify", "orders_create")
    gateway.deliver(fixture)

    with capture_logs() as logs:
        gateway.post("shop", fixture.body, {**fixture.headers, "X-Shopify-Event-Id": "replay-1"})

    [line] = [entry for entry in logs if entry["event"] == "ingest.replayed"]
    assert line["log_level"] == "warning"
    assert line["delivery_id"] == "replay-1"
    assert line["stored_delivery_id"] == "fd03f2b0-9ebe-5bcc-a501-2f6e94734674"


def test_replay_cannot_claim_the_delivery_id_of_a_later_real_delivery(gateway: Gateway) -> None:
    captured, later = load("github", "push.branch"), load("github", "issues.opened")
    gateway.deliver(captured)
    claim = {**captured.headers, "X-GitHub-Delivery": later.headers["X-GitHub-Delivery"]}
    gateway.post("ci", captured.body, claim)

    real = gateway.deliver(later)

    assert real.status_code == 202
    assert sorted(e["body"] for e in stored_events(gateway)) == sorted([captured.body, later.body])


def test_real_delivery_is_stored_even_if_a_replay_stored_first_under_its_id(
    gateway: Gateway,
) -> None:
    # The captured body never reached the gateway itself, so the replay is stored; the real
    # delivery whose id it borrowed is a different body and must be stored too.
    captured, later = load("github", "push.branch"), load("github", "issues.opened")
    claim = {**captured.headers, "X-GitHub-Delivery": later.headers["X-GitHub-Delivery"]}
    gateway.post("ci", captured.body, claim)

    real = gateway.deliver(later)

    assert real.status_code == 202
    assert gateway.count() == 2


def test_relabelled_github_body_is_a_duplicate(gateway: Gateway) -> None:
    fixture = load("github", "push.branch")
    gateway.deliver(fixture)
    relabelled = {**fixture.headers, "X-GitHub-Event": "issues", "X-GitHub-Delivery": "r-1"}

    response = gateway.post("ci", fixture.body, relabelled)

    assert response.status_code == 200
    assert [e["type"] for e in stored_events(gateway)] == ["push"]


def test_standard_webhooks_dedups_on_the_svix_id_it_verified_not_an_unsigned_webhook_id(
    gateway: Gateway,
) -> None:
    fixture = load("standard-webhooks", "contact.created")
    svix = {name.replace("webhook-", "svix-"): value for name, value in fixture.headers.items()}
    gateway.now = fixture.signed_at
    first = gateway.post("hooks", fixture.body, svix)

    replay = gateway.post("hooks", fixture.body, {**svix, "webhook-id": "msg_unsigned"})

    assert first.status_code == 202
    assert replay.status_code == 200
    assert [e["delivery_id"] for e in stored_events(gateway)] == [svix["svix-id"]]


def test_standard_webhooks_messages_with_distinct_signed_ids_are_distinct_events(
    gateway: Gateway,
) -> None:
    # The id is signed: the sender says these are two messages, even with the same body.
    body = b'{"type": "contact.created", "data": {}}'
    hooks = signer("hooks")
    statuses = [
        gateway.post("hooks", body, hooks.sign(body, {"webhook-id": msg}, SIGNED_AT)).status_code
        for msg in ("msg_a", "msg_b")
    ]

    assert statuses == [202, 202]
    assert gateway.count() == 2


def test_signed_gitlab_dedups_on_its_signed_webhook_id(gateway: Gateway) -> None:
    fixture = load("gitlab", "pipeline_hook")
    unsigned = {k: v for k, v in fixture.headers.items() if k != "X-Gitlab-Token"}
    headers = {**unsigned, **signer("gitlab-signed").sign(fixture.body, unsigned, SIGNED_AT)}
    first = gateway.post("gitlab-signed", fixture.body, headers)

    replay = gateway.post("gitlab-signed", fixture.body, {**headers, "Idempotency-Key": "new"})

    assert first.status_code == 202
    assert replay.status_code == 200
    assert gateway.count() == 1


def test_zendesk_dedups_on_the_signed_body_id_not_the_invocation_header(
    gateway: Gateway,
) -> None:
    fixture = load("zendesk", "ticket.created")
    gateway.deliver(fixture)

    replay = gateway.post(
        "support", fixture.body, {**fixture.headers, "X-Zendesk-Webhook-Invocation-Id": "1"}
    )

    assert replay.status_code == 200
    assert gateway.count() == 1


def test_generic_hmac_dedups_on_the_body_not_the_idempotency_header(gateway: Gateway) -> None:
    body = b'{"kind": "invoice.paid", "invoice": 7}'
    headers = {"Content-Type": "application/json", "Idempotency-Key": "k-1"}
    headers |= signer("billing").sign(body, headers, SIGNED_AT)
    first = gateway.post("billing", body, headers)

    replay = gateway.post("billing", body, {**headers, "Idempotency-Key": "k-2"})

    assert (first.status_code, replay.status_code) == (202, 200)
    assert gateway.count() == 1


# -- migration 0004: existing events get the key the providers compute now --------------------

OLD_EVENTS = sa.table(
    "events",
    sa.column("id", sa.Integer),
    sa.column("source", sa.String),
    sa.column("provider", sa.String),
    sa.column("type", sa.String),
    sa.column("delivery_id", sa.String),
    sa.column("received_at", sa.DateTime(timezone=True)),
    sa.column("headers", sa.JSON),
    sa.column("body", sa.LargeBinary),
)
RECEIVED = datetime(2026, 11, 1, tzinfo=UTC)


async def migrate(engine: AsyncEngine, revision: str, *, down: bool = False) -> None:
    """Alembic up or down to `revision`, on the engine the store migrates with."""
    alembic = AlembicConfig()
    alembic.set_main_option("script_location", str(database.MIGRATIONS))

    def run(connection: sa.Connection) -> None:
        alembic.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(alembic, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


def old_row(fixture: Fixture, delivery_id: str | None = None) -> dict[str, object]:
    """A fixture as 0.1 stored it: headers lower-cased without credentials."""
    provider = signer(fixture.source)
    headers = {k.lower(): v for k, v in fixture.headers.items()}
    payload = orjson.loads(fixture.body)
    return {
        "source": fixture.source,
        "provider": provider.name,
        "type": provider.event_type(headers, payload),
        "delivery_id": delivery_id or provider.delivery_id(headers, payload, fixture.body),
        "received_at": RECEIVED,
        "headers": {k: v for k, v in headers.items() if k not in provider.secret_headers},
        "body": fixture.body,
    }


SCHEDULE_ROW = {
    "source": "schedule",
    "provider": "schedule",
    "type": "weekly",
    "delivery_id": "weekly@2026-11-02T07:00:00+00:00",
    "received_at": RECEIVED,
    "headers": {},
    "body": b'{"rule": "weekly"}',
}


@pytest.fixture
async def engine_at_0003(store_url: str) -> AsyncIterator[AsyncEngine]:
    engine = database.write_engine(*database.connect(store_url))
    await database.upgrade(engine, "0003")
    try:
        yield engine
    finally:
        await engine.dispose()


async def rows(engine: AsyncEngine) -> list[sa.Row[Any]]:
    async with engine.connect() as conn:
        result = await conn.execute(sa.text("SELECT * FROM events ORDER BY id"))
        return list(result)


async def test_upgrade_gives_stored_events_the_dedup_key_their_provider_computes(
    engine_at_0003: AsyncEngine,
) -> None:
    # Both Stripe fixtures carry Stripe's sample event id: 0003 could hold only one of them.
    skipped = {"slack/url_verification", "stripe/payment_intent.succeeded"}
    fixtures = [f for f in deliverable() if f.id not in skipped]
    async with engine_at_0003.begin() as conn:
        await conn.execute(sa.insert(OLD_EVENTS), [old_row(f) for f in fixtures])
        await conn.execute(sa.insert(OLD_EVENTS), [SCHEDULE_ROW])

    await migrate(engine_at_0003, "head")

    *webhooks, schedule = await rows(engine_at_0003)
    for fixture, row in zip(fixtures, webhooks, strict=True):
        provider = signer(fixture.source)
        headers = {k.lower(): v for k, v in fixture.headers.items()}
        expected = provider.dedup_key(headers, orjson.loads(fixture.body), fixture.body)
        assert (fixture.id, row.dedup_key) == (fixture.id, expected)
        assert row.delivery_id == old_row(fixture)["delivery_id"]
    assert schedule.dedup_key == schedule.delivery_id == SCHEDULE_ROW["delivery_id"]


async def test_upgrade_keeps_replays_stored_before_it_and_dedups_later_ones(
    store_url: str, engine_at_0003: AsyncEngine
) -> None:
    fixture = load("github", "push.branch")
    async with engine_at_0003.begin() as conn:
        await conn.execute(sa.insert(OLD_EVENTS), [old_row(fixture, f"g-{n}") for n in (1, 2)])
        # A run of the replayed event: SQLite must not lose it to a rebuilt events table.
        await conn.execute(
            sa.text("INSERT INTO runs (event_id, rule, kind, created_at) VALUES (2, 'r', 'a', :t)"),
            {"t": RECEIVED},
        )

    await migrate(engine_at_0003, "head")
    store = Store(store_url)
    await store.open()
    try:
        again = await store.events.add(
            NewEvent(**{**old_row(fixture, "g-3"), "dedup_key": body_digest(fixture.body)})  # type: ignore[arg-type]
        )
        runs = await store.runs.find(event_id=2)
    finally:
        await store.close()

    assert [r.delivery_id for r in await rows(engine_at_0003)] == ["g-1", "g-2"]
    assert (again.id, again.duplicate, again.replayed) == (1, True, True)
    assert len(runs) == 1


async def test_downgrade_to_0003_and_upgrade_again_keeps_every_event(
    store_url: str, engine_at_0003: AsyncEngine
) -> None:
    captured, later = load("github", "push.branch"), load("github", "issues.opened")
    await migrate(engine_at_0003, "head")
    store = Store(store_url)
    await store.open()
    try:
        for fixture in (captured, later):  # two bodies under one delivery-id header
            row = old_row(fixture, "same-id")
            await store.events.add(NewEvent(**{**row, "dedup_key": body_digest(fixture.body)}))  # type: ignore[arg-type]
    finally:
        await store.close()

    await migrate(engine_at_0003, "0003", down=True)
    downgraded = await rows(engine_at_0003)
    await migrate(engine_at_0003, "head")
    upgraded = await rows(engine_at_0003)

    assert [r.body for r in downgraded] == [captured.body, later.body]
    assert len({r.delivery_id for r in downgraded}) == 2
    assert [r.dedup_key for r in upgraded] == [body_digest(captured.body), body_digest(later.body)]
