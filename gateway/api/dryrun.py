"""The rule tester: which rules an event matches and what they would do, executing nothing.

Templates are rendered as the worker would render them; no tool is called, no model asked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from gateway.api.models import (
    ActionPreview,
    ActionsPreview,
    AssistantMatch,
    AssistantPreview,
    RuleOutcome,
    RuleTestResult,
    TestedEvent,
)
from gateway.api.params import InvalidInput
from gateway.config import Config
from gateway.errors import MalformedPayload
from gateway.nesting import check_depth
from gateway.rules import templates
from gateway.rules.loader import RuleSet
from gateway.rules.model import Action, Assistant, Rule
from gateway.rules.plan import matching_rules, plan_rule
from gateway.rules.scope import scope_for
from gateway.rules.templates import TemplateError
from gateway.store import Event
from gateway.tools import TOOLS, describe_error


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


def try_rules(rules: RuleSet, event: Event) -> RuleTestResult:
    """Every loaded rule with whether it matches `event`, and for matches what would happen."""
    scope = scope_for(event)
    candidates = {rule.name for rule in matching_rules(rules, event)}
    results = [_try(rule, rule.name in candidates, event, scope) for rule in rules.rules]
    tested = TestedEvent(
        id=event.id,
        source=event.source,
        provider=event.provider,
        type=event.type,
        delivery_id=event.delivery_id,
        status=event.status,
    )
    return RuleTestResult(
        event=tested, matched=[r.rule for r in results if r.matched], rules=results
    )


def _try(
    rule: Rule, candidate: bool, event: Event, scope: dict[str, Any]
) -> ActionsPreview | AssistantMatch | RuleOutcome:
    entry: dict[str, Any] = {"rule": rule.name, "kind": rule.kind, "mode": rule.mode}
    if not rule.enabled:
        return RuleOutcome(**entry, matched=False, reason="disabled", error=None)
    if not candidate and rule.schedule is not None:
        reason = "a schedule rule: it runs on its schedule, or by gateway fire, not on events"
        return RuleOutcome(**entry, matched=False, reason=reason, error=None)
    if not candidate:
        reason = "`on` does not match this source and type"
        return RuleOutcome(**entry, matched=False, reason=reason, error=None)
    try:
        planned = plan_rule(rule, event, scope)  # what the worker would store
    except Exception as exc:  # an undefined value turned into text: the worker fails too
        return RuleOutcome(**entry, matched=True, reason=None, error=f"when/order_by: {exc}")
    if planned is None:
        return RuleOutcome(**entry, matched=False, reason="`when` is false", error=None)
    if planned.error is not None:  # the worker would create the run already failed
        return RuleOutcome(**entry, matched=True, reason=None, error=planned.error)
    entry |= {
        "matched": True,
        "reason": None,
        "error": None,
        "ordering_key": planned.ordering_key,
    }
    if rule.assistant is not None:
        return AssistantMatch(**entry, assistant=_assistant(rule.assistant, scope))
    return ActionsPreview(**entry, actions=_actions(rule, scope))


def _actions(rule: Rule, scope: dict[str, Any]) -> list[ActionPreview]:
    # Results of earlier actions exist only at run time: a template that reads them says so.
    scope = {**scope, "results": {}}
    return [_action(rule, action, scope) for action in rule.actions]


def _action(rule: Rule, action: Action, scope: dict[str, Any]) -> ActionPreview:
    tool = TOOLS.get(action.tool)
    side_effects = bool(tool and tool.side_effects)
    would = "shadow" if rule.mode == "shadow" and side_effects else "call"
    arguments: Any = None
    error: str | None = None
    try:
        if action.when is not None and not templates.truthy(templates.evaluate(action.when, scope)):
            would = "skip"
        else:
            html = tool.html_arguments if tool is not None else frozenset()
            arguments = _plain(templates.render_arguments(action.arguments, scope, html))
            if tool is not None:
                arguments = _plain(tool.validate(arguments))
    except TemplateError as exc:
        error = str(exc)
    except ValidationError as exc:
        error = describe_error(exc)
    except Exception as exc:  # e.g. an undefined name used inside a value: say so
        error = f"{type(exc).__name__}: {exc}"
    return ActionPreview(
        tool=action.tool,
        name=action.name,
        side_effects=side_effects,
        would=would,
        arguments=arguments,
        error=error,
    )


def _assistant(spec: Assistant, scope: dict[str, Any]) -> AssistantPreview:
    rendered: dict[str, str | None] = {}
    errors: list[str] = []
    for key in ("instructions", "prompt", "thread"):
        text = getattr(spec, key)
        rendered[key] = None
        if text is not None:
            try:
                rendered[key] = str(templates.evaluate(text, scope))
            except Exception as exc:  # TemplateError, or an undefined value turned into text
                errors.append(f"{key}: {exc}")
    return AssistantPreview(
        model=spec.model,
        tools=spec.listed_tools,
        policy=spec.policy,
        limits=spec.limits.model_dump(),
        errors=errors,
        **rendered,
    )


def _plain(value: Any) -> Any:
    """Rendered values as JSON would carry them; an undefined name inside one raises here."""
    return orjson.loads(orjson.dumps(value, default=str))
