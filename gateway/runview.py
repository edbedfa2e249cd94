"""How `gateway run RUN` shows a run: each step's arguments, result or error, tokens, cost and
model, whole (pretty JSON, wrapped, never cut), as the API and dashboard show them.

A call awaiting approval shows its exact arguments and digest, and the command that approves
them; other arguments and results are redacted as everywhere else (`gateway.api.detail`).
"""

from __future__ import annotations

import json
from typing import Any

from gateway.api.detail import redactor_for, run_detail
from gateway.api.models import dump
from gateway.assistant.models import dollars as money
from gateway.config import Config
from gateway.store import Store


async def fetch(store: Store, config: Config, run_id: int) -> dict[str, Any] | None:
    """The run with its steps, as `--json` prints it and the text below reads it."""
    found = await store.runs.get(run_id)
    if found is None:
        return None
    detail: dict[str, Any] = dump(await run_detail(store, found, redactor_for(config)))
    return detail


def text(detail: dict[str, Any]) -> list[str]:
    """The run as lines of plain text (no markup): a header, then each step as a block."""
    lines = [
        f"run {detail['id']} ({detail['rule']}, {detail['kind']}) on event {detail['event_id']}: "
        f"{detail['status']} after {detail['attempt']} attempt(s)"
        + (
            f" · tokens {detail['tokens']['input']} in / {detail['tokens']['output']} out"
            f" · cost {money(detail['cost'])}"
            if detail["kind"] == "assistant"
            else ""
        )
    ]
    if detail["error"]:
        lines.append(f"error: {detail['error']}")
    for step in detail["steps"]:
        lines.append("")
        lines += _step(step)
    if not detail["steps"]:
        lines.append("no steps yet")
    return lines


def _step(step: dict[str, Any]) -> list[str]:
    what = {
        "model": f"model turn ({step['model']})" if step["model"] else "model turn",
        "tool": f"tool call {step['tool']}",
        "prompt": "prompt",
        "answer": "answer",
    }[step["kind"]]
    facts = [f"step {step['position']} (id {step['id']}): {what}", step["status"]]
    if step["attempt"] > 1:
        facts.append(f"attempt {step['attempt']}")
    if step["duration_ms"] is not None:
        facts.append(f"{step['duration_ms']:.1f} ms")
    if step["kind"] == "model":
        tokens = step["tokens"]
        facts.append(f"tokens {tokens['input']} in / {tokens['output']} out")
        facts.append(f"cost {money(step['cost'])}")
    lines = [" · ".join(facts)]
    if step["decision"]:
        reason = f": {step['reason']!r}" if step["reason"] else ""
        lines.append(f"  {step['decision']} by {step['decided_by']}{reason}")
    waiting = step["status"] == "awaiting_approval"
    if step["arguments"] is not None:
        label = "arguments (exact, awaiting approval)" if waiting else "arguments"
        lines += _block(label, step["arguments"])
    if waiting:
        lines.append(f"  digest: {step['arguments_digest']}")
        lines.append(f"  approve: gateway approve {step['id']} --digest {step['arguments_digest']}")
        lines.append(f"  reject:  gateway reject {step['id']} --reason '...'")
    if step["kind"] == "model" and isinstance(step["result"], dict):
        lines += _model_turn(step["result"])
    elif step["result"] is not None:
        lines += _block("output" if step["kind"] != "tool" else "result", step["result"])
    if step["error"]:
        lines.append(f"  error: {step['error']}")
    return lines


def _model_turn(result: dict[str, Any]) -> list[str]:
    """What the model said and which calls it proposed, arguments parsed (`--json` has the
    raw output items)."""
    lines = []
    if result.get("text"):
        lines += ["  says:", *(f"    {line}" for line in str(result["text"]).splitlines())]
    for ran in result.get("code") or []:
        lines += [f"  ran code ({ran.get('status')}, container {ran.get('container_id')}):"]
        lines += [f"    {line}" for line in str(ran.get("code", "")).splitlines()]
        if ran.get("logs"):
            lines += ["  logs:", *(f"    {line}" for line in str(ran["logs"]).splitlines())]
    for proposed in result.get("calls") or []:
        try:
            arguments = json.loads(proposed.get("arguments") or "{}")
        except (TypeError, ValueError):
            arguments = proposed.get("arguments")
        name = str(proposed.get("name", "")).replace("__", ".")
        lines += _block(f"proposes {name}", arguments)
    return lines


def _block(label: str, value: Any) -> list[str]:
    pretty = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return [f"  {label}:", *(f"    {line}" for line in pretty.splitlines())]
