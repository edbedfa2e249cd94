"""`gateway events`, `gateway runs`, `gateway run`: read what the store holds (read-only:
these never migrate the database)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from gateway.cli.common import (
    ConfigOption,
    JsonOption,
    app,
    console,
    load_config,
    print_json,
    with_store,
)

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
            row["status"],
            str(row["attempt"]),
            str(tokens),
            f"{row['cost']:.4f}",
            (row["error"] or "")[:60],
        )
    console.print(table)


@app.command()
def run(
    run_id: Annotated[int, typer.Argument(help="The run to show")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one run and every step it took."""

    async def fetch(store: Store) -> dict[str, Any]:
        from gateway import operations
        from gateway.api.models import Run, Step, dump

        found = await operations.run(store, run_id)
        steps = [dump(Step.of(s)) for s in await store.steps.of_run(run_id)]
        return {**dump(Run.of(found)), "steps": steps}

    detail = with_store(load_config(config), fetch)
    if as_json:
        print_json(detail)
        return
    console.print(
        f"run {detail['id']} ({detail['rule']}) on event {detail['event_id']}: "
        f"[bold]{detail['status']}[/bold] after {detail['attempt']} attempt(s)"
    )
    if detail["error"]:
        console.print(f"error: {detail['error']}", markup=False)
    table = Table("#", "id", "kind", "tool", "status", "attempt", "ms", "result / error")
    for step in detail["steps"]:
        outcome = step["error"] or json.dumps(step["result"], default=str)
        table.add_row(
            str(step["position"]),
            str(step["id"]),
            step["kind"],
            step["tool"] or "",
            step["status"],
            str(step["attempt"]),
            f"{step['duration_ms'] or 0:.1f}",
            outcome[:80],
        )
    console.print(table)
