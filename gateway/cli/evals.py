"""`gateway evals`: the evals kept in the eval store, newest first, and `--delete ID` to
forget one with everything it copied in (docs/eval.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from gateway.cli.common import ConfigOption, JsonOption, app, console, fail, load_config, print_json


@app.command("evals")
def list_evals(
    config: ConfigOption = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Eval store URL (default: eval.store, else eval.db)"),
    ] = None,
    delete: Annotated[
        int | None, typer.Option("--delete", help="Forget eval ID and what it copied", min=1)
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the evals kept in the eval store, or delete one."""
    from gateway.assistant.models import dollars
    from gateway.evaluation import stored

    cfg = load_config(config)
    url = cfg.resolved(store) if store else cfg.eval_store_url
    if delete is not None:
        if not asyncio.run(stored.delete(url, delete)):
            raise fail(f"no eval {delete}")
        console.print(f"eval {delete} deleted", highlight=False)
        return
    rows = asyncio.run(stored.listed(url))
    if as_json:
        print_json(
            [
                {
                    **{name: getattr(row, name) for name in row.__slots__},
                    "created_at": row.created_at.isoformat(),
                    "pass_rate": row.pass_rate,
                }
                for row in rows
            ]
        )
        return
    table = Table("id", "when", "candidate rules", "events", "changed", "cost Δ", "expectations")
    for row in rows:
        rate = row.pass_rate
        table.add_row(
            str(row.id),
            row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            row.rules,
            str(row.events),
            str(row.changed),
            dollars(row.cost_candidate - row.cost_live),
            "-" if rate is None else f"{rate:.0%} of {row.expectations}",
        )
    console.print(table)
