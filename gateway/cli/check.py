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
    print_json,
    problems,
    run,
)
from gateway.config import Config
from gateway.errors import ConfigError
from gateway.rules.loader import RuleSet


@app.command()
def check(config: ConfigOption = None) -> None:
    """Validate the configuration and the rules; exit 1 listing every problem."""
    from gateway.errors import ConfigError
    from gateway.insecure import findings, shown_url
    from gateway.knowledge.check import warnings as knowledge_warnings
    from gateway.ruleset import check as check_all

    # One pass: the config's problems do not hide the rules' (every one, in line order).
    try:
        checked = check_all(config)
    except ConfigError as exc:
        problems(exc, "in the configuration")
        raise typer.Exit(1) from None
    for found, where in (
        (checked.in_config, "in the configuration"),
        (checked.in_rules, "in the rules"),
    ):
        if found:
            problems(ConfigError(found), where)
    if checked.rules is None or checked.in_config:
        raise typer.Exit(1)
    cfg = checked.config
    # Warnings, not errors: the walk-through runs on test secrets; `serve` decides beyond loopback.
    for finding in findings(cfg):
        err.print(f"[yellow]warning:[/yellow] {finding}", highlight=False, soft_wrap=True)
    for warning in knowledge_warnings(cfg):
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    _compare_mcp(cfg, checked.rules)
    console.print(
        f"[green]ok[/green]: {len(cfg.sources)} source(s), {len(checked.rules.rules)} rule(s) "
        f"from {cfg.rules_dir}, store {shown_url(cfg.store)}",
        highlight=False,
        soft_wrap=True,
    )
    for line in cfg.retention.summary():
        console.print(line, highlight=False, soft_wrap=True)
    for line in _reconciliation(cfg):
        console.print(line, highlight=False, soft_wrap=True)


def _reconciliation(cfg: Config) -> list[str]:
    """One line per source that reconciles: how often, how (docs/reconcile.md)."""
    from gateway.reconcile import reconciled_sources

    return [
        f"reconcile: {name} every {settings.every:g} s, "
        f"mode {getattr(settings, 'mode', 'fetch')}, looking back {settings.lookback:g} s at first"
        for name, settings in reconciled_sources(cfg).items()
    ]


def _compare_mcp(cfg: Config, rules: RuleSet) -> None:
    """The MCP tools the rules name, against what the servers list now (docs/mcp.md)."""
    from gateway.cli.mcp_check import compare

    found, warnings = run(lambda: compare(cfg, rules))
    for warning in warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    if found:
        problems(ConfigError(found), "against the MCP servers")
        raise typer.Exit(1)


@app.command()
def tools(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the definitions as JSON")] = False,
) -> None:
    """The tool catalogue: every tool a rule or an assistant may call, with its schema."""
    from gateway.cli.mcp_check import catalogue_entries
    from gateway.knowledge.settings import handlers_with_knowledge
    from gateway.tools import TOOLS, Toolbox

    cfg = load_config(config)
    toolbox = Toolbox(handlers_with_knowledge(cfg))
    served, warnings = run(lambda: catalogue_entries(cfg))
    for warning in warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    definitions = [
        {
            "tool": name,
            "side_effects": tool.side_effects,
            "recoverable": tool.recover_function is not None,
            **toolbox.definition(tool),
        }
        for name, tool in sorted(TOOLS.items())
    ] + served
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
