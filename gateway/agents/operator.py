"""The tools of the gateway's own `/mcp` endpoint, by scope: `read` searches, `operate` acts
on events, runs and schedules, `approve` decides pending calls bound to their digest.

Each tool is the admin API's own function (gateway.api.endpoints), so an agent and an operator
get the same decisions and the same shapes; a client is only ever shown its scopes' tools.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Collection, Mapping
from typing import Annotated, Any

import structlog
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from gateway.api import endpoints
from gateway.api.endpoints import Admin
from gateway.api.inputs import Approval, Decision, EventQuery, RuleTest, RunQuery, ScheduleQuery
from gateway.api.models import Run, dump
from gateway.errors import GatewayError
from gateway.mcp.catalogue import Catalogue
from gateway.mcp.settings import MAX_PAGE
from gateway.store.status import RunStatus, StepStatus
from gateway.tools import TOOLS, Tool
from gateway.tools import ToolError as PlainToolError

log = structlog.get_logger(__name__)

# The client whose request is being served (set by the endpoint from its token).
CLIENT: contextvars.ContextVar[str] = contextvars.ContextVar("mcp_client", default="?")

Page = Annotated[int, Field(ge=1, le=MAX_PAGE, description=f"at most this many (≤ {MAX_PAGE})")]
Id = Annotated[int, Field(ge=1)]


def build(scopes: Collection[str], state: Callable[[], Any]) -> MCPServer:
    """An MCP server offering the tools of `scopes`, acting on the gateway whose app state
    `state()` returns."""
    server = MCPServer("webhook-gateway", instructions=_INSTRUCTIONS)

    def admin(tool: str, **arguments: Any) -> Admin:
        log.info("mcp.call", client=CLIENT.get(), tool=tool, arguments=arguments)
        return Admin(state())

    def out(value: BaseModel | list[BaseModel]) -> Any:
        return [dump(v) for v in value] if isinstance(value, list) else dump(value)

    if "read" in scopes:

        @server.tool()
        async def search_events(
            source: str | None = None,
            type: str | None = None,
            status: str | None = None,
            before: Id | None = None,
            limit: Page = 20,
        ) -> dict[str, Any]:
            """Stored events, newest first; pass `next_before` back as `before` for more."""
            query = EventQuery(source=source, type=type, status=status, before=before, limit=limit)
            found = await _safely(endpoints.list_events(admin("search_events"), query))
            return out(found)  # type: ignore[no-any-return]

        @server.tool()
        async def search_runs(
            status: str | None = None,
            rule: str | None = None,
            event_id: Id | None = None,
            limit: Page = 20,
        ) -> dict[str, Any]:
            """Runs, newest first, by status (e.g. dead), rule or event."""
            query = RunQuery(status=status, rule=rule, event=event_id, limit=limit)
            return out(await _safely(endpoints.list_runs(admin("search_runs"), query)))  # type: ignore[no-any-return]

        @server.tool()
        async def get_run(run_id: Id) -> dict[str, Any]:
            """One run with its steps (model turns and tool calls; secrets redacted)."""
            return out(await _safely(endpoints.get_run(admin("get_run", run_id=run_id), run_id)))  # type: ignore[no-any-return]

        @server.tool()
        async def get_thread(key: str, limit: Page = 20) -> dict[str, Any]:
            """The last items of a conversation thread (assistant memory) by its key."""
            items = await admin("get_thread", key=key).store.threads.items(key)
            return {"key": key, "items": items[-limit:], "total": len(items)}

        @server.tool()
        async def list_schedules() -> dict[str, Any]:
            """Scheduled rules, their next fire times and last firing."""
            found = endpoints.list_schedules(admin("list_schedules"), ScheduleQuery())
            return out(await _safely(found))  # type: ignore[no-any-return]

        @server.tool()
        async def list_rules() -> dict[str, Any]:
            """The rules loaded now: triggers, actions or assistant, tools."""
            return out(await _safely(endpoints.list_rules(admin("list_rules"))))  # type: ignore[no-any-return]

        @server.tool()
        async def list_tools() -> dict[str, Any]:
            """The tool catalogue: each tool rules may call and whether it has side effects
            (MCP servers' tools included; `unreachable` names servers that did not answer)."""
            worker = admin("list_tools").worker
            tools: Mapping[str, Tool] = worker.tools if worker is not None else TOOLS
            unreachable = []
            if isinstance(tools, Catalogue):
                for name in tools.servers:
                    try:
                        await tools.prepare([f"{name}.*"])
                    except PlainToolError:
                        unreachable.append(name)
            listed = [
                {"name": name, "side_effects": tool.side_effects}
                for name, tool in sorted(tools.items())
            ]
            return {"tools": listed, "unreachable": unreachable}

    if "operate" in scopes:

        @server.tool()
        async def replay_event(event_id: Id) -> dict[str, Any]:
            """Route a stored event through the rules again: new runs, new idempotency keys."""
            done = endpoints.replay_event(admin("replay_event", event_id=event_id), event_id)
            return out(await _safely(done))  # type: ignore[no-any-return]

        @server.tool()
        async def retry_run(run_id: Id) -> dict[str, Any]:
            """Queue a dead or failed run again; it resumes from its journal."""
            done = endpoints.retry_run(admin("retry_run", run_id=run_id), run_id)
            return out(await _safely(done))  # type: ignore[no-any-return]

        @server.tool()
        async def fire_schedule(rule: str) -> dict[str, Any]:
            """Fire a scheduled rule now, outside its schedule."""
            from gateway.scheduler.commands import fire

            gateway = admin("fire_schedule", rule=rule)
            found = gateway.rules.by_name.get(rule)
            if found is None or found.schedule is None:
                raise ToolError(f"no scheduled rule named {rule!r}")
            stored = await _safely(fire(gateway.store, found))
            return {"rule": rule, "event_id": stored.id}

        @server.tool()
        async def dry_run(event_id: Id) -> dict[str, Any]:
            """Which rules a stored event matches and what each would do; nothing runs."""
            body = RuleTest.model_validate({"event_id": event_id})
            done = endpoints.test_rules(admin("dry_run", event_id=event_id), body)
            return out(await _safely(done))  # type: ignore[no-any-return]

    if "approve" in scopes:

        @server.tool()
        async def pending_approvals(limit: Page = 20) -> dict[str, Any]:
            """Calls waiting for approval, with their exact arguments and `arguments_digest`:
            approve with that digest, which binds the approval to those arguments."""
            gateway = admin("pending_approvals")
            runs = await gateway.store.runs.find(status=RunStatus.AWAITING_APPROVAL, limit=limit)
            waiting = []
            for run in runs:
                for step in await gateway.store.steps.of_run(run.id):
                    if step.status == StepStatus.AWAITING_APPROVAL:
                        waiting.append(
                            {
                                "step_id": step.id,
                                "run": dump(Run.of(run)),
                                "tool": step.tool,
                                "arguments": step.arguments,
                                "arguments_digest": step.arguments_digest,
                            }
                        )
            return {"items": waiting[:limit]}

        @server.tool()
        async def approve_step(
            step_id: Id,
            digest: Annotated[str, Field(pattern="^[0-9a-f]{64}$")],
        ) -> dict[str, Any]:
            """Approve a pending call for the arguments whose digest you were shown."""
            by = f"mcp:{CLIENT.get()}"
            body = Approval(by=by, digest=digest)
            done = endpoints.approve_step(admin("approve_step", step_id=step_id), step_id, body)
            return out(await _safely(done))  # type: ignore[no-any-return]

        @server.tool()
        async def reject_step(step_id: Id, reason: str | None = None) -> dict[str, Any]:
            """Reject a pending call; the model is told, with the reason."""
            body = Decision(by=f"mcp:{CLIENT.get()}", reason=reason)
            done = endpoints.reject_step(admin("reject_step", step_id=step_id), step_id, body)
            return out(await _safely(done))  # type: ignore[no-any-return]

    return server


async def _safely(pending: Any) -> Any:
    """Await an operation; a refusal (not found, wrong state, other arguments) becomes the
    tool's error message, as the API's 404/409 would."""
    try:
        return await pending
    except GatewayError as exc:
        raise ToolError(str(exc)) from None


_INSTRUCTIONS = (
    "Operate a webhook-to-assistant gateway: search events, runs and threads; replay events, "
    "retry runs, fire schedules, dry-run rules; approve or reject pending tool calls by the "
    "digest of their arguments. The tools offered are those your token's scopes allow."
)
