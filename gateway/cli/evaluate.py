"""`gateway eval`: replay stored events through candidate rules, side effects recorded not
made, and report what changed; a failed `expect:` makes the exit status 1 (docs/eval.md)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gateway.cli.common import ConfigOption, app, console, err, fail, load_config, problems
from gateway.errors import ConfigError, GatewayError
from gateway.evaluation.selection import MAX_EVENTS, Selection

if TYPE_CHECKING:
    from gateway.evaluation.expect import Failure
    from gateway.evaluation.report import EvalReport


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`7d`, `24h`, `30m` (that long ago) or an ISO 8601 time (UTC if it names no zone): the
    API's reading of a time (`gateway.api.inputs.read_time`)."""
    from gateway.api.inputs import read_time

    try:
        return read_time(text, now)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def parse_events(query: str, selection: Selection) -> Selection:
    """`selection` narrowed by an `--events` query, read by the admin API's parser
    (`gateway.api.inputs.event_query`); a bad query is a usage error (exit 2)."""
    from gateway.api.inputs import event_query
    from gateway.api.params import InvalidInput

    try:
        found, payload = event_query(query)
    except InvalidInput as exc:
        raise typer.BadParameter("; ".join(exc.problems), param_hint="--events") from None
    since = found.since or selection.since
    if found.since is not None and selection.since is not None:
        since = max(found.since, selection.since)
    return replace(
        selection,
        since=since,
        until=found.until,
        source=found.source,
        type=found.type,
        status=found.status,
        payload=payload,
    )


@app.command("eval")
def evaluate_rules(
    rules: Annotated[
        Path, typer.Option("--rules", help="The candidate rules directory", file_okay=False)
    ],
    config: ConfigOption = None,
    rule: Annotated[
        str | None, typer.Option("--rule", help="Only events the live rule NAME ran for")
    ] = None,
    last: Annotated[
        int, typer.Option("--last", help="The newest N stored events", min=1, max=MAX_EVENTS)
    ] = 50,
    since: Annotated[
        str | None, typer.Option("--since", help="Events received since: 7d, 24h or a time")
    ] = None,
    events: Annotated[
        str | None,
        typer.Option(
            "--events",
            help="Only events matching QUERY: source=shop type=orders/create status=routed "
            "since=7d until=... payload.FIELD=VALUE",
            metavar="QUERY",
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Eval store URL (default: eval.store, else eval.db)"),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Every candidate assistant uses this model profile"),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", help="Runs at once (default: worker.concurrency)", min=1),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option("--offline", help="Read-only tools answer from the live runs' journal"),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Go on above eval.confirm_above of estimated cost")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write the report as JSON")] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the replayed runs")
    ] = 300.0,
) -> None:
    """Replay stored events through the rules of --rules and compare with the live runs."""
    from gateway.evaluation.replay import evaluate
    from gateway.store import Store

    cfg = load_config(config)
    eval_url = cfg.resolved(store) if store else cfg.eval_store_url
    if eval_url == cfg.store_url:
        raise fail("the eval store must not be the gateway's store (--store)")
    selection = Selection(
        last=last, since=parse_since(since) if since else None, rule=rule, offline=offline
    )
    if events is not None:
        selection = parse_events(events, selection)

    def guard(estimate: float) -> None:
        limit = cfg.eval.confirm_above
        console.print(f"estimated model cost: ${estimate:.6f}", highlight=False)
        if estimate > limit and not yes:
            raise fail(f"the estimate is above eval.confirm_above (${limit:.2f}): add --yes")

    async def go() -> EvalReport:
        live = Store(cfg.store_url)
        await live.open(migrate=False)
        try:
            return await evaluate(
                cfg,
                live,
                rules,
                eval_url,
                selection,
                model=model,
                concurrency=concurrency,
                wait=timeout,
                before_models=guard,
            )
        finally:
            await live.close()

    try:
        report = asyncio.run(go())
    except ConfigError as exc:
        problems(exc, "in the candidate rules")
        raise typer.Exit(1) from None
    except (GatewayError, ValueError) as exc:
        raise fail(str(exc)) from None
    show(report)
    kept = f"kept as eval {report.id} (gateway evals; /ui/evals/{report.id})"
    console.print(kept, highlight=False)
    if out is not None:
        out.write_text(report.model_dump_json(indent=2))
    if report.failures:
        raise typer.Exit(1)


def show(report: EvalReport) -> None:
    table = Table("event", "source/type", "live calls", "candidate calls", "changed")
    for row in report.events:
        table.add_row(
            str(row.event_id),
            f"{row.source} {row.type}",
            "\n".join(call.tool for call in row.live.calls) or "-",
            "\n".join(_marked(call.tool, call.approval) for call in row.candidate.calls) or "-",
            "yes" if row.changed else "",
        )
    console.print(table)
    for row in report.events:
        if row.changed:
            console.print(f"event {row.event_id}:", highlight=False)
            console.print("\n".join(row.diff), markup=False, highlight=False)
            for change in row.changes:
                console.print(
                    f"  {change.tool} {change.argument}: {_json(change.live)} → "
                    f"{_json(change.candidate)}",
                    markup=False,
                    highlight=False,
                )
    totals = report.totals
    console.print(
        f"{totals.events} event(s), {totals.changed} changed; cost {totals.cost_live:.4f} → "
        f"{totals.cost_candidate:.4f}; latency Δ {totals.latency_delta_ms:+.0f} ms",
        highlight=False,
    )
    if totals.expectations:
        rate = totals.pass_rate if totals.pass_rate is not None else 1.0
        console.print(f"expectations: {rate:.0%} of {totals.expectations} passed", highlight=False)
    for failure in report.failures:
        err.print(
            f"[red]FAIL[/red] {_subject(failure)} rule {failure.rule}: "
            + escape(f"{failure.check} ({failure.detail})"),
            highlight=False,
            markup=True,
        )


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _marked(tool: str, approval: bool) -> str:
    return f"{tool} (would ask for approval)" if approval else tool


def _subject(failure: Failure) -> str:
    if failure.fixture is not None:
        return escape(f"fixture {failure.fixture}")
    return f"event {failure.event_id}"
