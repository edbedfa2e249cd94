"""`gateway schedules` and `gateway fire`: the scheduled rules, and firing one now.

Both also work on a new database: they bring its schema up to date first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Column, Table

from gateway.cli.common import (
    ConfigOption,
    app,
    console,
    fail,
    load_config,
    load_rules,
    print_json,
    with_store,
)
from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.store import Store


@app.command()
def schedules(
    config: ConfigOption = None,
    count: Annotated[int, typer.Option(help="Next fire times to show per rule")] = 3,
    now: Annotated[
        str | None, typer.Option(help="List as of this instant (ISO 8601; default: now)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array")] = False,
) -> None:
    """List every scheduled rule: next fire times (its zone and UTC), last firing and result."""
    from gateway.scheduler import list_schedules

    cfg = load_config(config)
    rules = load_rules(cfg)
    try:
        instant = datetime.fromisoformat(now) if now else datetime.now(UTC)
    except ValueError:
        raise typer.BadParameter(
            f"{now!r} is not an ISO 8601 instant", param_hint="--now"
        ) from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)

    async def fetch(store: Store) -> list[dict[str, Any]]:
        return await list_schedules(store, rules.rules, instant, count=count)

    rows = with_store(cfg, fetch, migrate=True)
    if as_json:
        print_json(rows)
        return
    table = Table(
        Column("rule", no_wrap=True),
        "schedule",
        "zone",
        "next (zone)",
        "next (UTC)",
        "last fire",
        "result",
    )
    for row in rows:
        upcoming = row["next"][0] if row["next"] else {"local": "-", "utc": "-"}
        table.add_row(
            row["rule"],
            f"cron {row['cron']}" if row["cron"] else f"every {row['every']}",
            row["timezone"],
            upcoming["local"],
            upcoming["utc"],
            row["last_fire_at"] or "-",
            row["last_result"] or "-",
        )
    console.print(table)


@app.command()
def fire(
    rule: Annotated[str, typer.Argument(help="A scheduled rule")],
    config: ConfigOption = None,
) -> None:
    """Fire a scheduled rule now (a new, manual event); prints the event id."""
    from gateway import operations

    cfg = load_config(config)
    rules = load_rules(cfg)
    try:  # before the store is opened: an unknown rule leaves the database alone
        found = operations.scheduled_rule(rules, rule)
    except GatewayError as exc:
        raise fail(str(exc)) from None

    async def go(store: Store) -> int:
        return await operations.fire(store, found)

    event_id = with_store(cfg, go, migrate=True)
    console.print(f"rule {rule} fired: event {event_id}")
