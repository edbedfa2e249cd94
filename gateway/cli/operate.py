"""The operator's actions from the command line: retry, approve, reject, replay.

Each calls `gateway.operations` (as the admin API and the dashboard do), then wakes the
workers of the gateway's processes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from gateway.cli.common import ConfigOption, app, console, load_config, load_rules, with_store
from gateway.config import Config

if TYPE_CHECKING:
    from gateway.store import Store

T = TypeVar("T")


async def wake_workers(store: Store) -> None:
    """Requeued runs: wake the workers of the gateway's processes (NOTIFY on PostgreSQL, a
    datagram on SQLite; their poll finds the runs anyway)."""
    notifier = store.wake_ups()
    try:
        await notifier.notify()
    finally:
        await notifier.stop()


def operate(cfg: Config, use: Callable[[Store], Awaitable[T]]) -> T:
    """Run an operator action (gateway.operations) and wake the workers of other processes;
    a missing id or an illegal state is a one-line error and exit status 1."""

    async def go(store: Store) -> T:
        result = await use(store)
        await wake_workers(store)
        return result

    return with_store(cfg, go)


@app.command()
def retry(
    run_id: Annotated[int, typer.Argument(metavar="RUN", help="A failed or dead run")],
    config: ConfigOption = None,
) -> None:
    """Run a failed or dead run again: finished steps are kept, the rest resume."""
    from gateway import operations

    operate(load_config(config), lambda store: operations.retry(store, run_id))
    console.print(f"run {run_id} queued again")


@app.command()
def approve(
    step_id: Annotated[int, typer.Argument(metavar="STEP", help="A step awaiting approval")],
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

    cfg = load_config(config)
    if digest is None:
        digest = _show_for_approval(cfg, step_id)
        typer.confirm("Approve this call with exactly these arguments?", abort=True)
    operate(cfg, lambda store: operations.approve(store, step_id, by=by, digest=digest))
    console.print(f"step {step_id} approved; its run resumes")


def _show_for_approval(cfg: Config, step_id: int) -> str | None:
    """Print a waiting call's tool, exact arguments and digest; the digest shown."""
    from gateway import operations

    found = with_store(cfg, lambda store: operations.step(store, step_id))
    console.print(f"step {step_id} of run {found.run_id}: {found.tool} ({found.status})")
    arguments = json.dumps(found.arguments, indent=2, default=str)
    for line in (arguments, f"arguments digest: {found.arguments_digest}"):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return found.arguments_digest


@app.command()
def reject(
    step_id: Annotated[int, typer.Argument(metavar="STEP", help="A step awaiting approval")],
    reason: Annotated[str, typer.Option(help="Why (the model is told)")],
    config: ConfigOption = None,
    by: Annotated[str, typer.Option(help="Who rejects (recorded)")] = "cli",
) -> None:
    """Reject a tool call that waits for a human; the model is told, with the reason."""
    from gateway import operations

    operate(
        load_config(config), lambda store: operations.reject(store, step_id, by=by, reason=reason)
    )
    console.print(f"step {step_id} rejected; its run resumes")


@app.command()
def replay(
    event_id: Annotated[int, typer.Argument(metavar="EVENT", help="A stored event")],
    config: ConfigOption = None,
) -> None:
    """Run the rules again on a stored event: new runs, new idempotency keys."""
    from gateway import operations

    cfg = load_config(config)
    rules = load_rules(cfg)
    replayed = operate(cfg, lambda store: operations.replay(store, rules, event_id))
    if replayed.fetching:
        console.print(f"event {event_id} had failed to fetch: fetching it again, then routing it")
        return
    if not replayed.run_ids:
        console.print(f"event {event_id} matches no rule now: no run created")
        return
    console.print(f"event {event_id} replayed: run(s) {', '.join(map(str, replayed.run_ids))}")
