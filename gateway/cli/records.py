"""`gateway events`, `gateway runs`, `gateway run`: read what the store holds (read-only:
these never migrate the database)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from gateway.cli.common import (
    ConfigOption,
    JsonOption,
    app,
    console,
    fail,
    load_config,
    print_json,
    with_store,
)
from gateway.runs.waiting import circuit_lines, run_state

if TYPE_CHECKING:
    from gateway.store import Store


@app.command()
def events(
    config: ConfigOption = None,
    source: Annotated[str | None, typer.Option(help="Only this source")] = None,
    status: Annotated[str | None, typer.Option(help="Only events in this status")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array")] = False,
) -> None:
    """List stored events, newest first."""

    async def fetch(store: Store) -> list[dict[str, Any]]:
        from gateway.api.models import Event, dump

        found = await store.events.find(source=source, status=status, limit=limit)
        return [dump(Event.of(e)) for e in found]

    rows = with_store(load_config(config), fetch)
    if as_json:
        print_json(rows)
        return
    table = Table("id", "source", "type", "delivery id", "status", "received at")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["source"],
            row["type"],
            row["delivery_id"],
            row["status"],
            row["received_at"],
        )
    console.print(table)


@app.command()
def runs(
    config: ConfigOption = None,
    status: Annotated[str | None, typer.Option(help="Only runs in this status (e.g. dead)")] = None,
    rule: Annotated[str | None, typer.Option(help="Only runs of this rule")] = None,
    event: Annotated[int | None, typer.Option(help="Only runs of this event")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array")] = False,
) -> None:
    """List runs, newest first (tokens and cost included)."""
    from gateway.assistant.models import dollars

    async def fetch(store: Store) -> list[dict[str, Any]]:
        from gateway.api.models import Run, dump

        found = await store.runs.find(status=status, rule=rule, event_id=event, limit=limit)
        return [dump(Run.of(r)) for r in found]

    rows = with_store(load_config(config), fetch)
    if as_json:
        print_json(rows)
        return
    table = Table("id", "event", "rule", "status", "attempt", "tokens", "cost", "error")
    for row in rows:
        tokens = row["tokens"]["input"] + row["tokens"]["output"]
        table.add_row(
            str(row["id"]),
            str(row["event_id"]),
            row["rule"],
            run_state(row),
            str(row["attempt"]),
            str(tokens),
            dollars(row["cost"]),
            (row["error"] or "")[:60],
        )
    console.print(table)
    for line in circuit_lines(rows):
        console.print(line, markup=False, highlight=False)


@app.command()
def run(
    run_id: Annotated[int, typer.Argument(metavar="RUN", help="The run to show")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one run and every step: arguments, result or error, tokens, cost, model."""
    from gateway import runview

    cfg = load_config(config)
    detail = with_store(cfg, lambda store: runview.fetch(store, cfg, run_id))
    if detail is None:
        raise fail(f"no run {run_id}")
    if as_json:
        print_json(detail)
        return
    for line in runview.text(detail):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
