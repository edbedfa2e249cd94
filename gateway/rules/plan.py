"""Planning: the runs an event starts, by the rules. One decision, made in one place.

The worker stores what `plan` returns; the dry run (`POST /api/rules/test`) reports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from gateway.rules import templates
from gateway.rules.loader import RuleSet
from gateway.rules.model import Rule
from gateway.rules.scope import scope_for
from gateway.rules.templates import TemplateError
from gateway.store import Event, NewEvent, NewRun
from gateway.store.status import EventStatus, RunStatus


def matching_rules(rules: RuleSet, event: Event | NewEvent) -> list[Rule]:
    """The enabled rules whose `on` (or, for a scheduled event, whose name) fits the event."""
    if event.source == "schedule":
        rule = rules.by_name.get(event.type)
        return [rule] if rule is not None and rule.enabled and rule.schedule else []
    return rules.matching(event.source, event.type)


class NoRuleFits:
    """Whether no rule's `on` fits an event (`matching_rules` is empty), kept by source and
    type for the rule set it was worked out from: the event writer asks it of every event."""

    def __init__(self, limit: int = 1024) -> None:
        self._limit = limit  # pairs kept at most: types come from the senders
        self._rules: RuleSet | None = None
        self._known: dict[tuple[str, str], bool] = {}

    def __call__(self, rules: RuleSet, event: Event | NewEvent) -> bool:
        if rules is not self._rules or len(self._known) >= self._limit:
            self._rules, self._known = rules, {}
        key = (event.source, event.type)
        known = self._known.get(key)
        if known is None:
            known = self._known[key] = not matching_rules(rules, event)
        return known


def plan_rule(rule: Rule, event: Event, scope: dict[str, Any]) -> NewRun | None:
    """The run `rule` starts for `event`, or None if its `when` is false.

    A rule whose templates fail on this event still gets a run, already failed, naming the
    error: nothing is dropped silently.
    """
    base = NewRun(event_id=event.id, rule=rule.name, kind=rule.kind, mode=rule.mode)
    try:
        if rule.when is not None and not templates.truthy(templates.evaluate(rule.when, scope)):
            return None
        key = templates.evaluate(rule.order_by, scope) if rule.order_by else None
        thread = None
        if rule.assistant is not None and rule.assistant.thread:
            thread = str(templates.evaluate(rule.assistant.thread, scope))
    except TemplateError as exc:
        return replace(base, status=RunStatus.FAILED, error=f"when/order_by: {exc}")
    ordering = None if key is None or key == "" else f"{rule.name}:{key}"
    if ordering is None and thread:
        # Runs continuing one conversation must not interleave their turns.
        ordering = f"thread:{thread}"
    return replace(base, ordering_key=ordering, thread_key=thread)


def plan_reads_payload(rule: Rule) -> bool:
    """Whether planning a run of `rule` may read the event's payload (its `when`, `order_by`
    or thread key names it)."""
    thread = rule.assistant.thread if rule.assistant is not None else None
    return templates.reads([rule.when, rule.order_by, thread], "payload")


def plan(rules: RuleSet, event: Event, scope: dict[str, Any] | None = None) -> list[NewRun]:
    """The runs an event starts: one per matching rule whose `when` holds."""
    matched = matching_rules(rules, event)
    if scope is None:
        # Parsing the body was most of routing's cost: only for a rule whose plan reads it.
        scope = scope_for(event, parse=any(plan_reads_payload(rule) for rule in matched))
    planned = (plan_rule(rule, event, scope) for rule in matched)
    return [run for run in planned if run is not None]


def routed_status(planned: Sequence[NewRun]) -> EventStatus:
    """What routing an event makes of it: routed if it starts runs, else unmatched."""
    return EventStatus.ROUTED if planned else EventStatus.UNMATCHED
