"""`gateway check` and `gateway tools`: what the configuration and the rules hold."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gateway.cli.common import (
    ConfigOption,
    app,
    console,
    err,
    load_config,
    load_rules,
    print_json,
)


@app.command()
def check(config: ConfigOption = None) -> None:
    """Validate the configuration and the rules; exit 1 listing every problem."""
    from gateway.insecure import findings, shown_url
    from gateway.knowledge.check import warnings as knowledge_warnings

    cfg = load_config(config)
    # Warnings, not errors: the walk-through runs on test secrets; `serve` decides beyond loopback.
    for finding in findings(cfg):
        err.print(f"[yellow]warning:[/yellow] {finding}", highlight=False, soft_wrap=True)
    for warning in knowledge_warnings(cfg):
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    rules = load_rules(cfg)
    console.print(
        f"[green]ok[/green]: {len(cfg.sources)} source(s), {len(rules.rules)} rule(s) "
        f"from {cfg.rules_dir}, store {shown_url(cfg.store)}",
        highlight=False,
    )


@app.command()
def tools(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the definitions as JSON")] = False,
) -> None:
    """The tool catalogue: every tool a rule or an assistant may call, with its schema."""
    from gateway.knowledge.settings import handlers_with_knowledge
    from gateway.tools import TOOLS, Toolbox

    toolbox = Toolbox(handlers_with_knowledge(load_config(config)))
    definitions = [
        {
            "tool": name,
            "side_effects": tool.side_effects,
            "recoverable": tool.recover_function is not None,
            **toolbox.definition(tool),
        }
        for name, tool in sorted(TOOLS.items())
    ]
    if as_json:
        print_json(definitions)
        return
    table = Table("tool", "side effects", "arguments", "description")
    for entry in definitions:
        table.add_row(
            entry["tool"],
            ("yes, recoverable" if entry["recoverable"] else "yes")
            if entry["side_effects"]
            else "no",
            ", ".join(entry["parameters"]["properties"]),
            entry["description"].splitlines()[0],
        )
    console.print(table)
