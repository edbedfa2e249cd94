"""`gateway backfill` and `gateway reconciliations`: one reconciliation now, and the last runs.

`backfill` runs the same `reconcile` the scheduler runs, once, from `--since`; events it
stores are routed by the worker of a running gateway (or the next one started).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from gateway.cli.common import ConfigOption, app, console, fail, load_config, print_json, with_store

if TYPE_CHECKING:
    from gateway.store import Reconciliation, Store


def _instant(value: str) -> datetime:
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 instant such as 2026-11-29T00:00Z",
            param_hint="--since",
        ) from None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


@app.command()
def backfill(
    source: Annotated[str, typer.Argument(help="A source with a reconcile: block")],
    since: Annotated[
        str, typer.Option(help="From this instant (ISO 8601, e.g. 2026-11-29T00:00Z)")
    ],
    mode: Annotated[
        str | None, typer.Option(help="redeliver or fetch (GitHub); default: the configured one")
    ] = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON")] = False,
) -> None:
    """Ask SOURCE's provider what it sent since --since and store (or have it resend) what is
    missing; print what was found."""
    from gateway.reconcile import reconcile

    cfg = load_config(config)
    start = _instant(since)
    if source not in cfg.sources:
        raise fail(f"no source named {source!r}")

    async def go(store: Store) -> Reconciliation | None:
        return await reconcile(store, cfg, source, since=start, mode=mode)

    record = with_store(cfg, go, migrate=True)
    assert record is not None  # a backfill's period is its own: never taken
    if as_json:
        print_json(_row(record))
    else:
        console.print(
            f"{record.status}: {record.found} found, {record.missing} missing, "
            f"{record.stored} stored, {record.redelivered} redelivery(ies) asked "
            f"({source}, {record.mode}, since {start.isoformat()})",
            highlight=False,
            soft_wrap=True,
        )
        if record.error:
            console.print(f"error: {record.error}", highlight=False, soft_wrap=True, markup=False)
    if record.status != "succeeded":
        raise typer.Exit(1)


@app.command()
def reconciliations(
    source: Annotated[str | None, typer.Option(help="Only this source's runs")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Runs to show")] = 20,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array")] = False,
) -> None:
    """The latest reconciliation runs: when, what they found missing, how they ended."""
    cfg = load_config(config)

    async def go(store: Store) -> list[Reconciliation]:
        return await store.reconciliations.recent(source, limit)

    records = with_store(cfg, go, migrate=True)
    if as_json:
        print_json([_row(r) for r in records])
        return
    table = Table("source", "started", "status", "found", "missing", "stored", "redelivered",
                  "error")  # fmt: skip
    for r in records:
        table.add_row(r.source, r.started_at.isoformat(timespec="seconds"), r.status,
                      str(r.found), str(r.missing), str(r.stored), str(r.redelivered),
                      (r.error or "")[:80])  # fmt: skip
    console.print(table)


def _row(record: Reconciliation) -> dict[str, Any]:
    return asdict(record)
