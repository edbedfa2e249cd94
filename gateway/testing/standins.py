"""Stand-ins to try the gateway without accounts: a model and a Jira on loopback.

    python -m gateway.testing.standins model --port 8100   # OpenAI-compatible, no key
    python -m gateway.testing.standins jira --port 8080    # Jira REST v2, project OPS

The model is the tests' scripted model (`ScriptedModel`) made to answer forever: in each
conversation it first calls a tool (`--tool`, with `--arguments`), and once the tool's output
is back it answers `--say`. The Jira is the tests' `FakeJira`, its issues kept in memory.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.testing.fake_jira import FakeJira
from gateway.testing.fake_llm import ScriptedModel, answer, call
from gateway.testing.llm_script import Step

DEFAULT_TOOL = "log.record"
DEFAULT_ARGUMENTS = {"message": "the demo model read the event and logged this line"}
DEFAULT_ANSWER = "Done: I logged the event."


class DemoModel(ScriptedModel):
    """A scripted model whose script never runs out: a tool call, then an answer, per turn."""

    def __init__(
        self,
        tool: str = DEFAULT_TOOL,
        arguments: dict[str, Any] | None = None,
        say: str = DEFAULT_ANSWER,
        model: str = "demo",
    ) -> None:
        super().__init__(model=model)
        # Tool names go to a model with `.` as `__` (the OpenAI name pattern has no dots).
        self.tool = tool.replace(".", "__")
        self.arguments = DEFAULT_ARGUMENTS if arguments is None else arguments
        self.say = say

    def next_step(self, body: dict[str, Any]) -> Step:
        """Answer once the last thing in the conversation is a tool's output; else call."""
        items = body.get("input", body.get("messages", []))
        last = items[-1] if isinstance(items, list) and items else {}
        returned = isinstance(last, dict) and (
            last.get("type") == "function_call_output" or last.get("role") == "tool"
        )
        offered = {_tool_name(t) for t in body.get("tools") or []}
        if returned or self.tool not in offered:
            return answer(self.say)
        return call(self.tool, self.arguments)

    async def _serve(
        self,
        request: Request,
        validate: Callable[[dict[str, Any]], str | None],
        render: Callable[[dict[str, Any], Step, list[str], str], dict[str, Any]],
    ) -> JSONResponse:
        body = await request.json()
        with self._lock:
            self.received.clear()  # a demo serves for hours: keep no history
        self.script(self.next_step(body))
        return await super()._serve(request, validate, render)


def _tool_name(tool: Any) -> str:
    if not isinstance(tool, dict):
        return ""
    return str(tool.get("name") or (tool.get("function") or {}).get("name") or "")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.testing.standins", description=__doc__.split("\n\n")[0]
    )
    kinds = parser.add_subparsers(dest="kind", required=True)
    model = kinds.add_parser("model", help="an OpenAI-compatible model at /v1, no key needed")
    model.add_argument("--port", type=int, default=8100)
    model.add_argument("--tool", default=DEFAULT_TOOL, help="the tool it calls first")
    model.add_argument(
        "--arguments", default=json.dumps(DEFAULT_ARGUMENTS), help="the call's arguments, JSON"
    )
    model.add_argument("--say", default=DEFAULT_ANSWER, help="its answer after the call")
    jira = kinds.add_parser("jira", help="a Jira (REST API v2) with project OPS, in memory")
    jira.add_argument("--port", type=int, default=8080)
    jira.add_argument("--project", action="append", help="a project key (default: OPS)")
    options = parser.parse_args(argv)
    if options.kind == "model":
        app: Any = DemoModel(options.tool, json.loads(options.arguments), options.say).app
        print(f"model stand-in: base_url http://127.0.0.1:{options.port}/v1", flush=True)
    else:
        app = FakeJira(projects=tuple(options.project or ["OPS"]))
        print(f"Jira stand-in: http://127.0.0.1:{options.port}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=options.port, log_level="warning")


if __name__ == "__main__":
    main()
