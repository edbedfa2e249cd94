"""The `gateway` command line: serve, check, send, and look into the store.

Commands that read the store open it directly from the config; no server needs to run.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Column, Table

from gateway import config as config_module
from gateway.config import Config
from gateway.errors import ConfigError, GatewayError

app = typer.Typer(help="Webhook-to-assistant automation gateway.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()
err = Console(stderr=True)
T = TypeVar("T")

if TYPE_CHECKING:
    from gateway.rules.loader import RuleSet
    from gateway.store import Store

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: $GATEWAY_CONFIG or ./gateway.yaml)"),
]


def main() -> None:
    app()


def _load(path: Path | None) -> Config:
    try:
        return config_module.load(path)
    except ConfigError as exc:
        _problems(exc, "in the configuration")
        raise typer.Exit(1) from None


def _run(make: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(make())  # type: ignore[arg-type]
    except GatewayError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None


def _print_version(wanted: bool) -> None:
    if wanted:
        version()
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """Webhook-to-assistant automation gateway."""


@app.command()
def version() -> None:
    """Print the gateway's version and the commit it was built from."""
    from gateway.build import describe

    console.print(describe(), highlight=False)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default from config)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default from config)")] = None,
    migrate: Annotated[bool, typer.Option(help="Apply schema migrations at start")] = True,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
    role: Annotated[
        list[str] | None,
        typer.Option(help="all (default), ingest, worker or scheduler; repeatable"),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Listen beyond loopback even with test secrets or a weak admin token",
        ),
    ] = False,
) -> None:
    """Run the gateway: webhook ingest, health and metrics."""
    import structlog

    from gateway import insecure as settings
    from gateway import log, server
    from gateway.app import create_app

    cfg = _load(config)
    log.configure(log_level, redact_fields=cfg.redact_fields)
    listen = host or cfg.host
    refused = settings.refused(cfg, listen, insecure=insecure)
    if refused:
        err.print(
            f"[red]not starting:[/red] {listen} is reachable from other machines and "
            f"{len(refused)} setting(s) are insecure:",
            highlight=False,
        )
        for finding in refused:
            err.print(f"  - {finding}", markup=False, highlight=False, soft_wrap=True)
        err.print(
            "Set real secrets, listen on 127.0.0.1, or pass --insecure to start anyway.",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(1)
    for finding in settings.findings(cfg):
        structlog.get_logger("gateway.insecure").warning(
            "insecure.setting", field=finding.field, problem=finding.problem
        )
    from gateway.app import ROLES

    roles = set(role or ["all"])
    unknown = roles - ROLES - {"all"}
    if unknown:
        err.print(f"[red]error:[/red] unknown role(s) {sorted(unknown)}; use all, {sorted(ROLES)}")
        raise typer.Exit(2)
    chosen = ROLES if "all" in roles else frozenset(roles)
    try:
        application = create_app(cfg, migrate=migrate, roles=chosen, reload_on_hangup=True)
    except ConfigError as exc:
        _problems(exc, "in the rules; not starting")
        raise typer.Exit(1) from None
    # Everything loaded so far lives as long as the process: keep it out of the collector's
    # scans, and collect less often. Parsing a webhook allocates hundreds of objects that die
    # young; with the default thresholds, collections cost more than the parse (bench/ingest).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    server.serve(application, cfg.server, host=listen, port=port if port is not None else cfg.port)


@app.command()
def check(config: ConfigOption = None) -> None:
    """Validate the configuration and the rules; exit 1 listing every problem."""
    from gateway.insecure import findings, shown_url

    cfg = _load(config)
    # Warnings, not errors: the walk-through runs on test secrets; `serve` decides beyond loopback.
    for finding in findings(cfg):
        err.print(f"[yellow]warning:[/yellow] {finding}", highlight=False, soft_wrap=True)
    rules = _rules(cfg)
    _compare_mcp(cfg, rules)
    console.print(
        f"[green]ok[/green]: {len(cfg.sources)} source(s), {len(rules.rules)} rule(s) "
        f"from {cfg.rules_dir}, store {shown_url(cfg.store)}",
        highlight=False,
    )


def _compare_mcp(cfg: Config, rules: RuleSet) -> None:
    """The MCP tools the rules name, against what the servers list now (docs/mcp.md)."""
    from gateway.mcp.check import compare

    problems, warnings = _run(lambda: compare(cfg, rules))
    for warning in warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    if problems:
        _problems(ConfigError(problems), "against the MCP servers")
        raise typer.Exit(1)


def _rules(cfg: Config) -> RuleSet:
    """The rules as the server would run them (`load_ruleset`), or every problem and exit 1."""
    from gateway.ruleset import load_ruleset

    try:
        return load_ruleset(cfg)
    except ConfigError as exc:
        _problems(exc, "in the rules")
        raise typer.Exit(1) from None


def _problems(exc: ConfigError, where: str) -> None:
    err.print(f"[red]{len(exc.problems)} problem(s) {where}:[/red]")
    for problem in exc.problems:
        err.print(f"  - {problem}", markup=False, highlight=False, soft_wrap=True)


def _with_store(cfg: Config, use: Callable[[Store], Awaitable[T]]) -> T:
    async def go() -> T:
        from gateway.store import Store

        store = Store(cfg.store_url)
        try:
            await store.open(migrate=False)
            return await use(store)
        finally:
            await store.close()

    return _run(go)


async def _wake_workers(store: Store) -> None:
    """Requeued runs: on PostgreSQL, NOTIFY the replicas' workers (SQLite's poll finds them)."""
    if not store.dialect.skip_locked:
        return
    from gateway.store.notify import Notifier

    notifier = Notifier(store.url)
    try:
        await notifier.notify()
    finally:
        await notifier.stop()


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


@app.command()
def tools(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the definitions as JSON")] = False,
) -> None:
    """The tool catalogue: every tool a rule or an assistant may call, with its schema."""
    from gateway.mcp.check import catalogue_entries
    from gateway.tools import TOOLS, Toolbox

    cfg = _load(config)
    toolbox = Toolbox(cfg.handlers)
    served, warnings = _run(lambda: catalogue_entries(cfg))
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
        _print_json(definitions)
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
    cfg = _load(config)

    async def fetch(store: Store) -> list[dict[str, Any]]:
        from gateway.api.models import Run, dump

        found = await store.runs.find(status=status, rule=rule, event_id=event, limit=limit)
        return [dump(Run.of(r)) for r in found]

    rows = _with_store(cfg, fetch)
    if as_json:
        _print_json(rows)
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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Show one run and every step it took."""
    cfg = _load(config)

    async def fetch(store: Store) -> dict[str, Any] | None:
        from gateway.api.models import Run, Step, dump

        found = await store.runs.get(run_id)
        if found is None:
            return None
        steps = [dump(Step.of(s)) for s in await store.steps.of_run(run_id)]
        return {**dump(Run.of(found)), "steps": steps}

    detail = _with_store(cfg, fetch)
    if detail is None:
        err.print(f"[red]error:[/red] no run {run_id}")
        raise typer.Exit(1)
    if as_json:
        _print_json(detail)
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


def _operate(cfg: Config, use: Callable[[Store], Awaitable[T]]) -> T:
    """Run an operator action (gateway.operations) and wake the workers of other processes;
    a missing id or an illegal state is a one-line error and exit status 1."""
    from gateway import operations

    async def go(store: Store) -> T:
        result = await use(store)
        await _wake_workers(store)
        return result

    try:
        return _with_store(cfg, go)
    except (operations.NotFound, operations.IllegalState) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@app.command()
def retry(
    run_id: Annotated[int, typer.Argument(help="A failed or dead run")],
    config: ConfigOption = None,
) -> None:
    """Run a failed or dead run again: finished steps are kept, the rest resume."""
    from gateway import operations

    _operate(_load(config), lambda store: operations.retry(store, run_id))
    console.print(f"run {run_id} queued again")


@app.command()
def approve(
    step_id: Annotated[int, typer.Argument(help="A step awaiting approval")],
    config: ConfigOption = None,
    by: Annotated[str, typer.Option(help="Who approves (recorded)")] = "cli",
    digest: Annotated[
        str | None,
        typer.Option(
            help="The step's arguments_digest (from `gateway run RUN --json`): approve those "
            "arguments without being asked; without it, they are shown and you confirm"
        ),
    ] = None,
) -> None:
    """Approve a tool call that waits for a human; the run goes on and makes the call.

    The approval is for exactly the arguments shown (or named by --digest): if the step holds
    others by then, nothing is approved.
    """
    from gateway import operations

    cfg = _load(config)
    if digest is None:
        digest = _show_for_approval(cfg, step_id)
        typer.confirm("Approve this call with exactly these arguments?", abort=True)
    _operate(cfg, lambda store: operations.approve(store, step_id, by=by, digest=digest))
    console.print(f"step {step_id} approved; its run resumes")


def _show_for_approval(cfg: Config, step_id: int) -> str | None:
    """Print a waiting call's tool, exact arguments and digest; the digest shown."""
    found = _with_store(cfg, lambda store: store.steps.get(step_id))
    if found is None:
        err.print(f"[red]error:[/red] no step {step_id}")
        raise typer.Exit(1)
    console.print(f"step {step_id} of run {found.run_id}: {found.tool} ({found.status})")
    arguments = json.dumps(found.arguments, indent=2, default=str)
    for line in (arguments, f"arguments digest: {found.arguments_digest}"):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return found.arguments_digest


@app.command()
def reject(
    step_id: Annotated[int, typer.Argument(help="A step awaiting approval")],
    reason: Annotated[str, typer.Option(help="Why (the model is told)")],
    config: ConfigOption = None,
    by: Annotated[str, typer.Option(help="Who rejects (recorded)")] = "cli",
) -> None:
    """Reject a tool call that waits for a human; the model is told, with the reason."""
    from gateway import operations

    _operate(_load(config), lambda store: operations.reject(store, step_id, by=by, reason=reason))
    console.print(f"step {step_id} rejected; its run resumes")


@app.command()
def replay(
    event_id: Annotated[int, typer.Argument(help="A stored event")],
    config: ConfigOption = None,
) -> None:
    """Run the rules again on a stored event: new runs, new idempotency keys."""
    from gateway import operations

    cfg = _load(config)
    rules = _rules(cfg)
    replayed = _operate(cfg, lambda store: operations.replay(store, rules, event_id))
    if not replayed.run_ids:
        console.print(f"event {event_id} matches no rule now: no run created")
        return
    console.print(f"event {event_id} replayed: run(s) {', '.join(map(str, replayed.run_ids))}")


@app.command()
def events(
    config: ConfigOption = None,
    source: Annotated[str | None, typer.Option(help="Only this source")] = None,
    status: Annotated[str | None, typer.Option(help="Only events in this status")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array")] = False,
) -> None:
    """List stored events, newest first."""
    from gateway.store import Store

    cfg = _load(config)

    async def fetch() -> list[dict[str, Any]]:
        from gateway.api.models import Event, dump

        store = Store(cfg.store_url)
        try:
            await store.open()
            found = await store.events.find(source=source, status=status, limit=limit)
            return [dump(Event.of(e)) for e in found]
        finally:
            await store.close()

    rows = _run(fetch)
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
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
def send(
    file: Annotated[Path, typer.Argument(help="The payload to post, byte for byte", exists=True)],
    source: Annotated[str, typer.Option(help="The configured source to sign for")],
    config: ConfigOption = None,
    headers: Annotated[
        Path | None,
        typer.Option(help="JSON object of headers to send (default: FILE's .headers.json)"),
    ] = None,
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="Extra header, 'Name: value'")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Where to post (default: this config's server)")
    ] = None,
) -> None:
    """Sign a payload as the source's provider would (fresh timestamp) and post it."""
    import httpx2

    from gateway.ingest.provider import PROVIDERS
    from gateway.insecure import shown_url

    cfg = _load(config)
    if source not in cfg.sources:
        err.print(f"[red]error:[/red] no source named {source!r} in the config")
        raise typer.Exit(1)
    body = file.read_bytes()
    if headers is None:
        sibling = file.with_name(file.name.removesuffix(".json") + ".headers.json")
        headers = sibling if sibling.exists() else None
    sent = merge_headers(json.loads(headers.read_text()) if headers else {}, _parse(header or []))
    provider = PROVIDERS[cfg.sources[source].provider](cfg.sources[source])
    sent = merge_headers(sent, provider.sign(body, sent, time.time()))
    sent.setdefault("Content-Type", "application/json")
    target = url or f"http://{cfg.host}:{cfg.port}/hooks/{source}"
    try:
        response = httpx2.post(target, content=body, headers=sent, timeout=30)
    except httpx2.HTTPError as exc:
        err.print(f"[red]error:[/red] could not post to {shown_url(target)}: {exc}")
        raise typer.Exit(1) from None
    console.print(f"{response.status_code} {response.text}", highlight=False, markup=False)
    if response.status_code >= 400:
        raise typer.Exit(1)


def merge_headers(base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """Header names are case-insensitive: a new value replaces any spelling of the old name."""
    lowered = {name.lower() for name in extra}
    merged = {k: v for k, v in base.items() if k.lower() not in lowered}
    merged.update(extra)
    return merged


def _parse(pairs: list[str]) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        name, sep, value = pair.partition(":")
        if not sep:
            raise typer.BadParameter(f"header {pair!r} is not 'Name: value'")
        parsed[name.strip()] = value.strip()
    return parsed


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
    from datetime import UTC, datetime

    from gateway.scheduler import list_schedules

    cfg = _load(config)
    rules = _rules(cfg)
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

    rows = _with_open_store(cfg, fetch)
    if as_json:
        _print_json(rows)
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
    from gateway.scheduler import fire as fire_rule

    cfg = _load(config)
    rules = _rules(cfg)
    found = next((r for r in rules.scheduled if r.name == rule), None)
    if found is None:
        known = ", ".join(r.name for r in rules.scheduled) or "none"
        err.print(f"[red]error:[/red] no enabled scheduled rule named {rule!r} (known: {known})")
        raise typer.Exit(1)

    async def go(store: Store) -> int:
        return (await fire_rule(store, found)).id

    event_id = _with_open_store(cfg, go)
    console.print(f"rule {rule} fired: event {event_id}")


def _with_open_store(cfg: Config, use: Callable[[Store], Awaitable[T]]) -> T:
    """Like `_with_store`, but brings the schema up to date first (a new database works)."""

    async def go() -> T:
        from gateway.store import Store

        store = Store(cfg.store_url)
        try:
            await store.open()
            return await use(store)
        finally:
            await store.close()

    return _run(go)


def _unreachable(exc: BaseException) -> bool:
    """The database is not there yet (refused, unknown host, starting up): worth waiting for."""
    if isinstance(exc, OSError):
        return True
    # PostgreSQL's "the database system is starting up" (SQLSTATE 57P03), wrapped by SQLAlchemy.
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == "57P03"


@db_app.command("upgrade")
def db_upgrade(
    config: ConfigOption = None,
    wait: Annotated[
        float,
        typer.Option(
            min=0, help="Seconds to retry while the database cannot be reached (default: none)"
        ),
    ] = 0,
) -> None:
    """Apply every pending migration."""
    from gateway.store import database

    cfg = _load(config)
    deadline = time.monotonic() + wait

    async def upgrade() -> str | None:
        delay = 0.5
        while True:
            engine, _ = database.connect(cfg.store_url)
            try:
                await database.upgrade(engine)
                return await database.current_revision(engine)
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                left = deadline - time.monotonic()
                if left < delay:
                    waited = f" within {wait:g} s" if wait else ""
                    message = f"[red]error:[/red] the database did not answer{waited}: {exc}"
                    err.print(message, highlight=False, soft_wrap=True)
                    raise typer.Exit(1) from None
                message = f"waiting for the database ({left:.0f} s left): {exc}"
                err.print(message, highlight=False, soft_wrap=True)
            finally:
                await engine.dispose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    console.print(f"schema at revision {_run(upgrade)}")


@db_app.command("current")
def db_current(config: ConfigOption = None) -> None:
    """Print the schema revision of the database and of this gateway."""
    from gateway.store import database

    cfg = _load(config)

    async def current() -> str | None:
        engine, _ = database.connect(cfg.store_url)
        try:
            return await database.current_revision(engine)
        finally:
            await engine.dispose()

    console.print(f"database: {_run(current)}  gateway: {database.head_revision()}")


if __name__ == "__main__":
    main()
