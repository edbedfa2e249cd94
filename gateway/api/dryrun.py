"""The rule tester: which rules an event matches and what they would do, executing nothing.

Templates are rendered as the worker would render them; no tool is called, no model asked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from gateway.api.params import InvalidInput
from gateway.config import Config
from gateway.errors import MalformedPayload
from gateway.nesting import check_depth
from gateway.rules import templates
from gateway.rules.loader import RuleSet
from gateway.rules.model import Rule
from gateway.rules.templates import TemplateError
from gateway.store import Event
from gateway.tools import TOOLS, describe_error
from gateway.worker import matching_rules, scope_for


def raw_event(
    config: Config,
    source: str,
    event_type: str,
    payload: Any,
    headers: dict[str, str] | None = None,
) -> Event:
    """An event that was never received, for trying the rules on.

    Its payload is held to the same nesting limit as a received one.
    """
    try:
        check_depth(payload, config.max_json_depth)
    except MalformedPayload as exc:
        raise InvalidInput([f"payload: {exc.detail}"]) from None
    body = payload.encode("utf-8") if isinstance(payload, str) else orjson.dumps(payload)
    known = config.sources.get(source)
    return Event(
        id=0,
        source=source,
        provider=known.provider if known is not None else source,
        type=event_type,
        delivery_id="rule-test",
        received_at=datetime.now(UTC),
        headers=dict(headers or {}),
        body=body,
        status="test",
    )


def try_rules(rules: RuleSet, event: Event) -> dict[str, Any]:
    """Every loaded rule with whether it matches `event`, and for matches what would happen."""
    scope = scope_for(event)
    candidates = {rule.name for rule in matching_rules(rules, event)}
    results = [_try(rule, rule.name in candidates, scope) for rule in rules.rules]
    return {
        "event": {k: v for k, v in event.summary().items() if k != "received_at"},
        "matched": [r["rule"] for r in results if r["matched"]],
        "rules": results,
    }


def _try(rule: Rule, candidate: bool, scope: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "rule": rule.name,
        "kind": rule.kind,
        "mode": rule.mode,
        "matched": False,
        "reason": None,
        "error": None,
    }
    if not rule.enabled:
        return {**entry, "reason": "disabled"}
    if not candidate:
        return {**entry, "reason": "`on` does not match this source and type"}
    try:
        if rule.when is not None and not templates.truthy(templates.evaluate(rule.when, scope)):
            return {**entry, "reason": "`when` is false"}
        ordering = templates.evaluate(rule.order_by, scope) if rule.order_by else None
        ordering_key = None if ordering is None else str(ordering)
    except Exception as exc:  # TemplateError, or an undefined value turned into text
        # The worker would create the run already failed, naming this error.
        return {**entry, "matched": True, "error": f"when/order_by: {exc}"}
    entry |= {"matched": True, "ordering_key": ordering_key}
    if rule.assistant is not None:
        entry["assistant"] = _assistant(rule, scope)
    else:
        entry["actions"] = _actions(rule, scope)
    return entry


def _actions(rule: Rule, scope: dict[str, Any]) -> list[dict[str, Any]]:
    # Results of earlier actions exist only at run time: a template that reads them says so.
    scope = {**scope, "results": {}}
    found = []
    for action in rule.actions:
        tool = TOOLS.get(action.tool)
        side_effects = bool(tool and tool.side_effects)
        item: dict[str, Any] = {
            "tool": action.tool,
            "as": action.name,
            "side_effects": side_effects,
            "would": "shadow" if rule.mode == "shadow" and side_effects else "call",
            "arguments": None,
            "error": None,
        }
        try:
            if action.when is not None and not templates.truthy(
                templates.evaluate(action.when, scope)
            ):
                item["would"] = "skip"
                found.append(item)
                continue
            html = tool.html_arguments if tool is not None else frozenset()
            arguments = _plain(templates.render_arguments(action.arguments, scope, html))
            item["arguments"] = arguments
            if tool is not None:
                item["arguments"] = _plain(tool.validate(arguments))
        except TemplateError as exc:
            item["error"] = str(exc)
        except ValidationError as exc:
            item["error"] = describe_error(exc)
        except Exception as exc:  # e.g. an undefined name used inside a value: say so
            item["error"] = f"{type(exc).__name__}: {exc}"
        found.append(item)
    return found


def _assistant(rule: Rule, scope: dict[str, Any]) -> dict[str, Any]:
    spec = rule.assistant
    assert spec is not None
    rendered: dict[str, Any] = {
        "model": spec.model,
        "tools": list(spec.tools),
        "policy": spec.policy,
        "limits": spec.limits.model_dump(),
        "errors": [],
    }
    for key in ("instructions", "prompt", "thread"):
        text = getattr(spec, key)
        if text is None:
            rendered[key] = None
            continue
        try:
            rendered[key] = str(templates.evaluate(text, scope))
        except Exception as exc:  # TemplateError, or an undefined value turned into text
            rendered[key] = None
            rendered["errors"].append(f"{key}: {exc}")
    return rendered


def _plain(value: Any) -> Any:
    """Rendered values as JSON would carry them; an undefined name inside one raises here."""
    return orjson.loads(orjson.dumps(value, default=str))
